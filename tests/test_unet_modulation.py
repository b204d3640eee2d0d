"""At inference the U-Net computes every adaptive norm's (1 + scale, shift) in one matrix product (ModulationTable);
training computes them norm by norm. Both must give the same network output (tolerance 1e-5: the same sums, the
"1 +" taken inside the bias), and the exported step graph must hold one modulation Gemm, not one per norm."""
from __future__ import annotations

import collections

import onnx
import torch

from conftest import randomized_unet, tiny_unet_config


def _inputs(cfg, g):
    x = torch.randn(2, cfg.channels, cfg.height, cfg.width, generator=g)
    ctx = torch.rand(2, cfg.context, cfg.channels, cfg.height, cfg.width, generator=g) * 2 - 1
    return (x, torch.tensor([1.0, 0.3]), torch.tensor([1, 3]), ctx,
            torch.randint(0, cfg.n_actions + 1, (2, cfg.context), generator=g), torch.tensor([0.0, 0.1]))


def test_fused_modulation_equals_per_norm_projections():
    cfg = tiny_unet_config(blocks=2)
    m = randomized_unet(cfg, seed=3)
    args = _inputs(cfg, torch.Generator().manual_seed(0))
    with torch.no_grad():
        fused = m.eval()(*args)
        per_norm = m.train()(*args)
    assert len(m.ada_norms) == 2 * (2 * 2 + 2 * 2 + 1) + 1  # two blocks a level down and up, mid, norm_out
    assert (fused - per_norm).abs().max() < 1e-5


def test_exported_step_graph_has_one_modulation_product(tmp_path):
    from nextframe.export.onnx import export_step

    cfg = tiny_unet_config()
    m = randomized_unet(cfg, seed=4)
    path = str(tmp_path / "step.onnx")
    export_step(m, path)
    ops = collections.Counter(n.op_type for n in onnx.load(path).graph.node)
    # noise MLP (2), context-noise embedding, skip gain, and the one modulation product; 9 norms would add 9
    assert ops["Gemm"] + ops["MatMul"] == 5, ops
