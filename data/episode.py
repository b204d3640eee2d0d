"""The episode file contract (docs/formats.md): one recorded ALE episode as a pickle-free .npz.

Readers validate every key they use and name the file and the key in the error, because these
files come from outside the process (other tools write them, users pass them on the command line).
"""
from __future__ import annotations

import dataclasses
import os
import zipfile

import numpy as np

NATIVE_HEIGHT, NATIVE_WIDTH = 210, 160


@dataclasses.dataclass(frozen=True)
class Episode:
    frames: np.ndarray  # uint8 [T+1, 210, 160, 3]; frames[0] is the observation after reset
    actions: np.ndarray  # int64 [T]; actions[t] leads from frames[t] to frames[t+1]
    game: str
    frameskip: int

    @property
    def n_steps(self) -> int:
        return int(self.actions.shape[0])


def save_episode(path: str | os.PathLike, episode: Episode, **extra: np.ndarray | int | str) -> None:
    """Write atomically (temp file + rename) so a killed recorder never leaves a half episode."""
    _check_arrays(str(path), episode.frames, episode.actions)
    tmp = f"{path}.tmp.npz"
    np.savez_compressed(
        tmp,
        frames=episode.frames,
        actions=episode.actions.astype(np.int64),
        game=np.array(episode.game),
        frameskip=np.array(int(episode.frameskip)),
        **{k: np.asarray(v) for k, v in extra.items()},
    )
    os.replace(tmp, path)


def load_episode(path: str | os.PathLike) -> Episode:
    name = str(path)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"episode: file not found ({name})")
    with open(name, "rb") as fh:  # we own the handle, so a corrupt file cannot leak it
        try:
            data = np.load(fh, allow_pickle=False)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
            raise ValueError(f"episode: {name} is not a readable .npz file ({type(e).__name__}: {e})") from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"episode: {name} is a single .npy array, not an .npz archive")
        for key in ("frames", "actions", "game", "frameskip"):
            if key not in data.files:
                raise ValueError(f"episode: {name} has no key '{key}' (keys: {sorted(data.files)})")
        try:
            frames, actions = data["frames"], data["actions"]
            game, frameskip = data["game"], data["frameskip"]
        except ValueError as e:  # object arrays need pickle, which we never allow
            raise ValueError(f"episode: {name} holds a pickled array ({e})") from None
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise ValueError(f"episode: {name} is truncated or corrupt ({type(e).__name__}: {e})") from None
    _check_arrays(name, frames, actions)
    if game.shape != () or game.dtype.kind not in "US":
        raise ValueError(f"episode: {name} key 'game' must be a str scalar (got dtype {game.dtype}, shape {game.shape})")
    if frameskip.shape != () or frameskip.dtype.kind not in "iu":
        raise ValueError(f"episode: {name} key 'frameskip' must be an int scalar (got dtype {frameskip.dtype}, shape {frameskip.shape})")
    return Episode(frames=frames, actions=actions, game=str(game), frameskip=int(frameskip))


def _check_arrays(name: str, frames: np.ndarray, actions: np.ndarray) -> None:
    if frames.dtype != np.uint8:
        raise ValueError(f"episode: {name} key 'frames' has dtype {frames.dtype} (expected uint8)")
    if frames.ndim != 4 or frames.shape[1:] != (NATIVE_HEIGHT, NATIVE_WIDTH, 3) or frames.shape[0] < 1:
        raise ValueError(f"episode: {name} key 'frames' has shape {tuple(frames.shape)} (expected [T+1, 210, 160, 3])")
    if actions.dtype != np.int64:
        raise ValueError(f"episode: {name} key 'actions' has dtype {actions.dtype} (expected int64)")
    if actions.ndim != 1 or actions.shape[0] != frames.shape[0] - 1:
        raise ValueError(
            f"episode: {name} key 'actions' has shape {tuple(actions.shape)} (expected [{frames.shape[0] - 1}] for {frames.shape[0]} frames)"
        )
    if actions.size and actions.min() < 0:
        raise ValueError(f"episode: {name} key 'actions' has a negative action index ({int(actions.min())})")
