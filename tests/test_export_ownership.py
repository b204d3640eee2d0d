"""`nextframe export --out DIR` replaces DIR only when it is a bundle nextframe wrote holding nothing but its
listed files (or --force); anything else of the user's is refused in one line and left as it was. SIGTERM
during a command runs the same cleanup as Ctrl-C: no half-written bundle is left behind."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from conftest import randomized_model, tiny_config
from nextframe.cli import main
from nextframe.training.checkpoint import save_model


@pytest.fixture
def model_path(tmp_path):
    p = str(tmp_path / "m.safetensors")
    save_model(randomized_model(tiny_config()), p)
    return p


def test_export_replaces_its_own_bundle(model_path, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert main(["export", model_path, "--out", str(out)]) == 0
    first = (out / "manifest.json").read_bytes()
    assert main(["export", model_path, "--out", str(out), "--steps", "2"]) == 0
    assert (out / "manifest.json").read_bytes() != first
    assert main(["export", model_path, "--out", str(tmp_path / "empty_dir_ok")]) == 0


@pytest.mark.parametrize("make", ["user_file_beside", "not_a_bundle", "plain_file", "manifest_not_nextframe"])
def test_export_refuses_what_the_user_owns(model_path, tmp_path, capsys, make):
    out = tmp_path / "target"
    if make == "plain_file":
        out.write_text("my notes")
    else:
        if make == "user_file_beside":
            assert main(["export", model_path, "--out", str(out)]) == 0
            capsys.readouterr()
        else:
            out.mkdir()
        name, text = {"user_file_beside": ("notes.txt", "mine"), "not_a_bundle": ("thesis.tex", "mine"),
                      "manifest_not_nextframe": ("manifest.json", '{"name": "my app"}')}[make]
        (out / name).write_text(text)
    before = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()) \
        if out.is_dir() else out.read_bytes()
    assert main(["export", model_path, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "refusing to replace it" in err and "--force" in err and "\n" not in err
    after = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()) \
        if out.is_dir() else out.read_bytes()
    assert after == before
    assert main(["export", model_path, "--out", str(out), "--force"]) == 0
    assert (out / "manifest.json").is_file() and not (out / "notes.txt").exists()


def test_sigterm_leaves_no_partial_bundle(model_path, tmp_path):
    """A real `nextframe export` process, terminated while it works: neither --out nor a temporary bundle
    directory remains."""
    out = tmp_path / "bundle"
    proc = subprocess.Popen([sys.executable, "-m", "nextframe", "export", model_path, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.name.startswith(".bundle-") for p in tmp_path.iterdir()):
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle-")]
