"""Single frames of several games at model resolution, labelled by game: the AR image model's training set
(and the game classifier's). Built from recorded episodes (the episode format, ../shared/formats.md)."""
from __future__ import annotations

import glob
import os

import numpy as np

from nextframe.data.episode import load_episode
from nextframe.data.resize import to_model_resolution


def load_image_set(dirs: str | list[str], classes: tuple[str, ...], height: int = 64, width: int = 64,
                   every: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Every `every`-th frame of each episode under dirs: (uint8 [N, 3, H, W], int64 [N] class index). A game
    not in classes is an error (a silently dropped game would leave a class without data)."""
    paths = []
    for d in [dirs] if isinstance(dirs, str) else dirs:
        if not os.path.isdir(d):
            raise FileNotFoundError(f"image set: directory not found ({d})")
        paths += sorted(glob.glob(os.path.join(d, "*.npz")))
    if not paths:
        raise ValueError(f"image set: no episode files (*.npz) in {dirs}")
    lower = [c.lower() for c in classes]
    images, labels = [], []
    for p in paths:
        ep = load_episode(p)
        if ep.game.lower() not in lower:
            raise ValueError(f"image set: {p} is a {ep.game} episode; the classes are {', '.join(classes)}")
        x = to_model_resolution(ep.frames[::every], height, width)
        images.append(x)
        labels.append(np.full(len(x), lower.index(ep.game.lower()), np.int64))
    return np.concatenate(images), np.concatenate(labels)


def cached_image_set(cache: str, dirs, classes, height=64, width=64, every=2):
    """load_image_set, kept in an npz cache (rebuilt when the class list differs)."""
    if os.path.isfile(cache):
        with np.load(cache) as f:
            if list(f["classes"]) == list(classes):
                return f["images"], f["labels"]
    images, labels = load_image_set(dirs, classes, height, width, every)
    os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
    np.savez(cache, images=images, labels=labels, classes=np.array(classes))
    return images, labels
