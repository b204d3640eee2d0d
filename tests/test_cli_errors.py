"""The CLI's entry point: every error a user can fix prints one line `nextframe: ...` and exits with 2 (files
that are folders or missing, foreign files such as a pickled .pt, outputs that cannot be created); Ctrl-C exits
with 130 and one line; a real bug (an exception that is not a user error) keeps its traceback."""
from __future__ import annotations

import pytest
import torch

import nextframe.cli as cli
from nextframe.cli import main, user_error


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("nextframe: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_user_errors_are_one_line(tmp_path, capsys):
    pt = tmp_path / "m.pt"
    torch.save({"w": torch.zeros(2)}, pt)  # a pickle: must never be unpickled, and refused in one line
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["export", str(pt), "--out", str(tmp_path / "b")], "is not a readable safetensors file"),
        (["export", "--out", str(a_file / "sub")], "is a file, not a directory"),
        (["rollout", str(tmp_path), "--bundle", str(tmp_path), "--out", str(tmp_path / "r")], "no manifest.json"),
        (["train", str(tmp_path)], "is a directory, not a config file"),
        (["train", str(tmp_path / "nope.json")], "train config: file not found"),
        (["bench", str(a_file)], "is not a bundle"),
    ]
    for argv, fragment in cases:
        assert main(argv) == 2, argv
        assert fragment in _one_line(capsys), argv


def test_episode_that_is_a_directory(tmp_path, capsys):
    from conftest import randomized_model, tiny_config
    from nextframe.training.checkpoint import save_model

    model = tmp_path / "m.safetensors"
    save_model(randomized_model(tiny_config()), str(model))
    assert main(["rollout", str(tmp_path), "--model", str(model), "--out", str(tmp_path / "r")]) == 2
    assert "is a directory, not an episode file" in _one_line(capsys)


def test_os_errors_memory_errors_and_interrupts(monkeypatch, capsys):
    def raiser(exc):
        def cmd(args):
            raise exc
        return cmd

    for exc, code, fragment in ((OSError(28, "No space left on device", "/data/out.npz"), 2,
                                 "No space left on device (/data/out.npz)"),
                                (MemoryError(), 2, "out of memory"),
                                (KeyboardInterrupt(), 130, "interrupted")):
        monkeypatch.setattr(cli, "cmd_record", raiser(exc))
        assert main(["record", "--out", "x"]) == code
        assert fragment in _one_line(capsys)


def test_a_bug_keeps_its_traceback(monkeypatch):
    def buggy(args):
        raise KeyError("internal")

    monkeypatch.setattr(cli, "cmd_record", buggy)
    with pytest.raises(KeyError):
        main(["record", "--out", "x"])
    assert user_error(TypeError("x")) is None and user_error(ModuleNotFoundError("no", name="mystery")) is None
