"""Images as PNG files and grids, with only NumPy and zlib (the runtime install has no imaging library)."""
from __future__ import annotations

import struct
import zlib

import numpy as np

from nextframe.atomic import write_atomic


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 [H, W, 3] -> an 8-bit RGB PNG (no filter; zlib level 9)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"png: expected uint8 [H, W, 3] (got {image.dtype} {list(image.shape)})")
    h, w, _ = image.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), image.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def grid(images: np.ndarray, columns: int | None = None, scale: int = 1, pad: int = 2) -> np.ndarray:
    """uint8 [N, H, W, 3] -> one image: a grid (columns default: up to 8), each image scaled by `scale`
    (nearest neighbour: pixels stay pixels), `pad` grey pixels between them."""
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"png: expected images [N, H, W, 3] (got {list(images.shape)})")
    n, h, w, c = images.shape
    cols = columns or min(n, 8)
    rows = -(-n // cols)
    images = images.repeat(scale, 1).repeat(scale, 2)
    h, w = h * scale, w * scale
    out = np.full((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, c), 64, np.uint8)
    for i, im in enumerate(images):
        r, q = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = im
    return out


def write_png(path: str, image: np.ndarray) -> None:
    data = png_bytes(image)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    write_atomic(path, write)
