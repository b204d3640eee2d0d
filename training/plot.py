"""A dependency-free SVG line plot of the training loss (log scale), rewritten at each log step."""
from __future__ import annotations

import math


def write_loss_svg(path: str, steps: list[int], losses: list[float], title: str = "training loss") -> None:
    if len(steps) < 2:
        return
    w, h, pad = 640, 360, 48
    ys = [math.log10(max(v, 1e-8)) for v in losses]
    x0, x1 = steps[0], steps[-1]
    y0, y1 = min(ys), max(ys)
    y1 = y1 if y1 > y0 else y0 + 1

    def px(s, y):
        return pad + (s - x0) / max(1, x1 - x0) * (w - 2 * pad), h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)

    pts = " ".join(f"{px(s, y)[0]:.1f},{px(s, y)[1]:.1f}" for s, y in zip(steps, ys))
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle">{title}</text>',
           f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
           f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
           f'<text x="{pad}" y="{h - pad + 16}">{x0}</text><text x="{w - pad}" y="{h - pad + 16}" text-anchor="end">{x1} steps</text>',
           f'<text x="{pad - 4}" y="{h - pad}" text-anchor="end">{10 ** y0:.3g}</text>',
           f'<text x="{pad - 4}" y="{pad + 4}" text-anchor="end">{10 ** y1:.3g}</text>',
           f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{pts}"/>', "</svg>"]
    with open(path, "w") as f:
        f.write("\n".join(svg))
