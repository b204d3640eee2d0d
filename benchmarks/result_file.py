"""Where every benchmark's JSON result goes: one indented file, its folder created on demand."""
from __future__ import annotations

import json
import os


def write_result(path: str | None, result: dict) -> None:
    """Write a benchmark's JSON result (indented) when a path is given, creating its folder."""
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
