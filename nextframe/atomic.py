"""Writing a file so that it is either complete or absent: written under a temporary name beside it, then renamed
over the final name (atomic on one filesystem). If anything goes wrong, Ctrl-C and SIGTERM included (the CLI turns
SIGTERM into SystemExit), the temporary file is removed and the final name keeps what it held before."""
from __future__ import annotations

import os
from typing import Callable


def write_atomic(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """write(tmp) writes the content to tmp, a name in path's folder with path's extension (numpy adds ".npz" to
    names without it); then tmp replaces path."""
    path = os.fspath(path)
    stem, ext = os.path.splitext(path)
    tmp = f"{stem}.partial-{os.getpid()}{ext}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise
