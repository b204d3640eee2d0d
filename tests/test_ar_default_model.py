"""The shipped AR image model: small files with their card, `nextframe generate --class Breakout` works with no bundle
argument (exported once into the cache), and what it draws is the game asked for: the shipped game classifier
(trained on real frames; 100% on held-out real frames) must recognise the class in most samples, for the masked-AR
loop at the default DiSA schedule and for the one-step Distilled Decoding student."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from nextframe.cli import DEFAULT_AR_MODEL, DEFAULT_AR_STUDENT, DEFAULT_MODEL_DIR, default_ar_bundle, main
from nextframe.evaluation.game_classifier import load_classifier
from nextframe.runtime.image_session import ImageSession

CLASSIFIER = os.path.join(DEFAULT_MODEL_DIR, "game_classifier.safetensors")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    before = os.environ.get("NEXTFRAME_CACHE")
    os.environ["NEXTFRAME_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        yield default_ar_bundle()
    finally:
        if before is None:
            os.environ.pop("NEXTFRAME_CACHE", None)
        else:
            os.environ["NEXTFRAME_CACHE"] = before


def test_shipped_files_are_small_and_documented():
    for path in (DEFAULT_AR_MODEL, DEFAULT_AR_STUDENT, CLASSIFIER):
        assert os.path.getsize(path) <= 12 * 1024 * 1024, path
    assert os.path.isfile(os.path.join(DEFAULT_MODEL_DIR, "MODEL_CARD_mar.md"))


def test_generate_needs_no_bundle_argument(bundle, tmp_path, capsys):
    """(The bundle fixture keeps NEXTFRAME_CACHE at its cache for the module, so this finds the export made there.)"""
    out = tmp_path / "grid.png"
    assert main(["generate", "--class", "Breakout", "--n", "4", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "exporting" not in captured.err
    summary = json.loads(captured.out)
    assert summary["n"] == 4 and out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("mode", ["ar", "dd1"])
def test_samples_are_the_game_asked_for(bundle, mode):
    clf = load_classifier(CLASSIFIER)
    with ImageSession(bundle, batch=10) as s:
        assert s.classes == list(clf.classes)
        labels = np.repeat(np.arange(len(s.classes)), 4)
        images = s.generate(None, len(labels), labels=labels.tolist(), seed=11, mode=mode)
    with torch.no_grad():
        pred = clf(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).argmax(1).numpy()
    assert (pred == labels).mean() >= 0.9, (mode, pred, labels)
