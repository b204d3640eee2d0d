"""The episode file contract (docs/formats.md): one recorded ALE episode as a pickle-free .npz.

Readers validate every key they use and name the file and the key in the error, because these
files come from outside the process (other tools write them, users pass them on the command line).
"""
from __future__ import annotations

import dataclasses
import os
import tokenize
import zipfile
import zlib

import numpy as np

from nextframe.atomic import write_atomic

NATIVE_HEIGHT, NATIVE_WIDTH = 210, 160
FRAMESKIP = 2  # emulator frames per step that every model here is trained on: 30 game steps per second
# what a damaged archive raises from zipfile, zlib and numpy's header parser (found by tests/fuzz_harness.py)
CORRUPT = (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError, tokenize.TokenError,
           SyntaxError, OverflowError, UnicodeDecodeError, KeyError)


def _why(e: BaseException) -> str:
    """An exception as one short line for a message."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}"


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
    write_atomic(path, lambda tmp: np.savez_compressed(
        tmp,
        frames=episode.frames,
        actions=episode.actions.astype(np.int64),
        game=np.array(episode.game),
        frameskip=np.array(int(episode.frameskip)),
        **{k: np.asarray(v) for k, v in extra.items()},
    ))


def load_episode(path: str | os.PathLike) -> Episode:
    name = str(path)
    if os.path.isdir(name):
        raise ValueError(f"episode: {name} is a directory, not an episode file")
    if not os.path.isfile(name):
        raise FileNotFoundError(f"episode: file not found ({name})")
    with open(name, "rb") as fh:  # we own the handle, so a corrupt file cannot leak it
        check_declared_sizes(fh, name)
        fh.seek(0)
        try:
            data = np.load(fh, allow_pickle=False)
        except (ValueError, *CORRUPT) as e:
            raise ValueError(f"episode: {name} is not a readable .npz file ({_why(e)})") from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"episode: {name} is a single .npy array, not an .npz archive")
        for key in ("frames", "actions", "game", "frameskip"):
            if key not in data.files:
                raise ValueError(f"episode: {name} has no key {key!r} (keys: {sorted(data.files)})")
        try:
            frames, actions = data["frames"], data["actions"]
            game, frameskip = data["game"], data["frameskip"]
        except ValueError as e:  # object arrays need pickle, which we never allow (or a damaged array)
            raise ValueError(f"episode: {name} holds an unreadable or pickled array ({_why(e)})") from None
        except CORRUPT as e:
            raise ValueError(f"episode: {name} is truncated or corrupt ({_why(e)})") from None
    _check_arrays(name, frames, actions)
    if game.shape != () or game.dtype.kind not in "US":
        raise ValueError(f"episode: {name} key 'game' must be a str scalar (got dtype {game.dtype}, shape {game.shape})")
    if frameskip.shape != () or frameskip.dtype.kind not in "iu":
        raise ValueError(f"episode: {name} key 'frameskip' must be an int scalar (got dtype {frameskip.dtype}, shape {frameskip.shape})")
    return Episode(frames=frames, actions=actions, game=str(game), frameskip=int(frameskip))


def check_episode_fits(name: str, game: str, frameskip: int, actions: np.ndarray, model_game: str, n_actions: int,
                       source: str = "model") -> None:
    """An episode against the model (or bundle) it is about to meet: the same game, the world's speed the model
    learned (FRAMESKIP), and actions the model knows. Anything else would run, and be silently wrong."""
    if game != model_game:
        raise ValueError(f"episode: {name} is {game}, the {source} is {model_game}")
    if frameskip != FRAMESKIP:
        raise ValueError(f"episode: {name} was recorded with frameskip {frameskip}, the {source} learned frameskip "
                         f"{FRAMESKIP} (a different game speed)")
    if actions.size and int(actions.max()) >= n_actions:
        raise ValueError(f"episode: {name} has action {int(actions.max())}, the {source} knows actions "
                         f"0..{n_actions - 1}")


def available_memory() -> int:
    """Bytes of memory this process could still use (Linux MemAvailable; physical memory elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_declared_sizes(fh, name: str) -> None:
    """Every array's .npy header, read before anything is decompressed: the dtype and shape the file declares
    (frames uint8 [T+1, 210, 160, 3], actions int64 [T]), the byte count agreeing with the zip entry's size, and
    the total fitting in memory. A small archive that inflates to gigabytes is refused here, in one line."""
    try:
        zf = zipfile.ZipFile(fh)
    except (ValueError, *CORRUPT) as e:
        raise ValueError(f"episode: {name} is not a readable .npz file ({_why(e)})") from None
    total = 0
    with zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[:-4]
            try:
                with zf.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version not in ((1, 0), (2, 0)):
                        raise ValueError(f"npy format version {version}")
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(member)
                    header_len = member.tell()
            except (ValueError, *CORRUPT) as e:
                raise ValueError(f"episode: {name} key {key!r} has no readable .npy header ({_why(e)})") from None
            if dtype.hasobject:
                raise ValueError(f"episode: {name} key {key!r} holds Python objects (pickle), which are never loaded")
            if any(d < 0 for d in shape):
                raise ValueError(f"episode: {name} key {key!r} declares a negative dimension {shape}")
            nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            # deflate expands at most ~1032:1, a stored entry not at all: a larger declared size is a lie about
            # the data behind it, caught here before a reader allocates what the header claims
            limit = info.compress_size if info.compress_type == zipfile.ZIP_STORED else 1032 * info.compress_size + 1024
            if info.file_size > limit:
                raise ValueError(f"episode: {name} key {key!r} declares {info.file_size} bytes from {info.compress_size} "
                                 "stored bytes, more than its compression can produce (corrupt)")
            if header_len + nbytes != info.file_size:
                raise ValueError(f"episode: {name} key {key!r} declares {nbytes} bytes of data {shape} but its entry "
                                 f"holds {info.file_size - header_len} (corrupt)")
            if key == "frames":
                _check_frames_declared(name, dtype, shape)
            if key == "actions" and dtype != np.int64:
                raise ValueError(f"episode: {name} key 'actions' has dtype {dtype} (expected int64)")
            total += nbytes
    free = available_memory()
    if total > free // 2:  # the loader holds a copy while decompressing and callers make float versions
        raise ValueError(f"episode: {name} declares {total / 2**30:.1f} GiB of arrays, more than half of the "
                         f"{free / 2**30:.1f} GiB of memory available")


def _check_frames_declared(name: str, dtype: np.dtype, shape: tuple) -> None:
    if dtype != np.uint8:
        raise ValueError(f"episode: {name} key 'frames' has dtype {dtype} (expected uint8)")
    if len(shape) != 4 or tuple(shape[1:]) != (NATIVE_HEIGHT, NATIVE_WIDTH, 3) or shape[0] < 1:
        raise ValueError(f"episode: {name} key 'frames' has shape {tuple(shape)} (expected [T+1, 210, 160, 3])")


def _check_arrays(name: str, frames: np.ndarray, actions: np.ndarray) -> None:
    _check_frames_declared(name, frames.dtype, frames.shape)
    if actions.dtype != np.int64:
        raise ValueError(f"episode: {name} key 'actions' has dtype {actions.dtype} (expected int64)")
    if actions.ndim != 1 or actions.shape[0] != frames.shape[0] - 1:
        raise ValueError(
            f"episode: {name} key 'actions' has shape {tuple(actions.shape)} (expected [{frames.shape[0] - 1}] for {frames.shape[0]} frames)"
        )
    if actions.size and actions.min() < 0:
        raise ValueError(f"episode: {name} key 'actions' has a negative action index ({int(actions.min())})")
