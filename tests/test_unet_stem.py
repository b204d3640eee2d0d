"""The U-Net's stem and skip gain read the frames where they lie (a strided convolution, a tiled gain) instead of
folding them into cells; both must compute exactly what the folded form computes, for any padding (the frame
padded unevenly top/bottom and left/right too). Tolerance 1e-5: float32 sums taken in another order."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nextframe.models.unet import fold, unfold
from conftest import randomized_unet, tiny_unet_config


def _folded_stem(m, z, ctx_frames):
    b, k = ctx_frames.shape[:2]
    ctx = fold(ctx_frames.reshape(b * k, *ctx_frames.shape[2:]), m.cfg)
    ctx = ctx.reshape(b, k * ctx.shape[1], *ctx.shape[2:])
    return nn.Conv2d.forward(m.conv_in, torch.cat([fold(z, m.cfg, 0.0), ctx], dim=1))


@pytest.mark.parametrize("size", [(20, 12), (18, 10), (17, 9)])  # no padding, even padding, uneven padding
@pytest.mark.parametrize("stem_kernel", [1, 3])
def test_stem_and_skip_map_equal_the_folded_form(size, stem_kernel):
    cfg = tiny_unet_config(height=size[0], width=size[1], stem_kernel=stem_kernel)
    m = randomized_unet(cfg, seed=1)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, cfg.channels, cfg.height, cfg.width, generator=g)
    ctx = torch.rand(2, cfg.context, cfg.channels, cfg.height, cfg.width, generator=g) * 2 - 1
    cond = torch.randn(2, cfg.cond_dim, generator=g)
    with torch.no_grad():
        assert torch.allclose(m.conv_in(z, ctx), _folded_stem(m, z, ctx), atol=1e-5)
        folded_skip = unfold(m.skip_gain(cond)[:, :, None, None] * fold(z, cfg, 0.0), cfg)
        assert torch.allclose(m.skip_map(cond) * z, folded_skip, atol=1e-6)


def test_stem_reads_black_beyond_the_frame():
    """A context padded with 0 instead of -1 differs (the padding value reaches the border cells)."""
    cfg = tiny_unet_config(height=18, width=10)
    m = randomized_unet(cfg, seed=2)
    ctx = torch.zeros(1, cfg.context, cfg.channels, cfg.height, cfg.width)
    z = torch.zeros(1, cfg.channels, cfg.height, cfg.width)
    with torch.no_grad():
        z_cells = fold(z, cfg, 0.0)
        wrong = nn.Conv2d.forward(m.conv_in, torch.cat([z_cells, fold(ctx[0], cfg, 0.0).reshape(1, -1, *z_cells.shape[2:])], dim=1))
        assert torch.allclose(m.conv_in(z, ctx), _folded_stem(m, z, ctx), atol=1e-5)
        assert (m.conv_in(z, ctx) - wrong).abs().max() > 1e-3
