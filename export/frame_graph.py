"""The frame graph: a frame-stack bundle's whole next-frame step as one ONNX graph, so that a GPU runtime can keep
the loop's state on the device (csrc/ort_device_loop.h).

One run does what csrc/frame_loop.cpp does for one frame: every evaluation of the manifest's schedule with its Euler
update (the core's rounding order), the clamp, the palette snap, the push (noised to the context level) and the
context moved on by one frame. The state, the last K frames and the actions that led to them, goes in and the next
state comes out, so a runtime binds two state buffers and swaps them each frame (no copy, fixed addresses for CUDA
graphs); per frame only the starting noise and the action come from the host. A count of non-finite values before
the clamp comes out too: a broken graph must not pass for a dark frame (the core refuses such a frame).

Why not bind the step graph on the device instead: the sampler's arithmetic between evaluations would then need
kernels of our own for every GPU backend; inside the graph every backend (ONNX Runtime CUDA, TensorRT) runs it.
"""
from __future__ import annotations

import numpy as np
import torch

from nextframe.models.flow import euler_update
from nextframe.models.palette import snap_torch

FRAME_FILE = "frame.onnx"
# graph io name -> role (csrc/graph_roles.h)
FRAME_ROLES = {"ctx_frames": "context_frames", "ctx_actions": "context_actions", "action": "action",
               "noise": "frame_noise", "push_noise": "push_noise", "frame": "frame",
               "next_ctx_frames": "next_context_frames", "next_ctx_actions": "next_context_actions",
               "non_finite": "non_finite"}


class FrameStep(torch.nn.Module):
    """(ctx_frames [1,K,C,H,W], ctx_actions [1,K], action [1], noise [1,C,H,W][, push_noise [1,C,H,W]]) ->
    (frame, next_ctx_frames, next_ctx_actions, non_finite [1] int64). push_noise only where context_noise > 0; frames
    snapped to the model's palette where it has one (as the bundle's manifest)."""

    def __init__(self, model, times: list[float], context_noise: float):
        super().__init__()
        self.model, self.times, self.context_noise = model.eval(), [float(t) for t in times], float(context_noise)
        palette = getattr(model, "palette", None)
        self.palette = None if palette is None else np.asarray(palette)

    def forward(self, ctx_frames, ctx_actions, action, noise, push_noise=None):
        cn = self.context_noise
        ctx_t = torch.full((1,), cn)
        x = noise
        for t, t_next in zip(self.times[:-1], self.times[1:]):
            denoised = self.model(x, torch.full((1,), t), action, ctx_frames, ctx_actions, ctx_t)
            x = euler_update(x, denoised, t, t_next)
        # x - x is 0 exactly where x is finite (NaN for NaN and both infinities): plain arithmetic every GPU provider
        # runs (IsNaN / IsInf nodes may fall back to the CPU, which rules out a CUDA graph of the whole run)
        non_finite = ((x - x) != 0).to(torch.int64).sum().reshape(1)
        x = x.clamp(-1.0, 1.0)
        if self.palette is not None:
            x = snap_torch(x, self.palette)
        pushed = x if push_noise is None else (1.0 - cn) * x + cn * push_noise
        next_frames = torch.cat([ctx_frames[:, 1:], pushed[:, None]], dim=1)
        next_actions = torch.cat([ctx_actions[:, 1:], action.reshape(1, 1)], dim=1)
        return x, next_frames, next_actions, non_finite


def frame_io_specs(model, context_noise: float) -> tuple[list[dict], list[dict]]:
    c = model.cfg
    frame = [1, c.channels, c.height, c.width]
    ctx = [1, c.context, *frame[1:]]
    inputs = [("ctx_frames", "float32", ctx), ("ctx_actions", "int64", [1, c.context]), ("action", "int64", [1]),
              ("noise", "float32", frame)] + ([("push_noise", "float32", frame)] if context_noise > 0 else [])
    outputs = [("frame", "float32", frame), ("next_ctx_frames", "float32", ctx),
               ("next_ctx_actions", "int64", [1, c.context]), ("non_finite", "int64", [1])]
    spec = lambda rows: [{"name": n, "dtype": d, "shape": s, "role": FRAME_ROLES[n]} for n, d, s in rows]  # noqa: E731
    return spec(inputs), spec(outputs)


def example_inputs(model, context_noise: float, seed: int = 0) -> tuple[torch.Tensor, ...]:
    c = model.cfg
    g = torch.Generator().manual_seed(seed)
    frame = (1, c.channels, c.height, c.width)
    ins = (torch.rand((1, c.context, *frame[1:]), generator=g) * 2 - 1,
           torch.tensor([[(i + 1) % (c.n_actions + 1) for i in range(c.context)]]), torch.tensor([min(1, c.n_actions - 1)]),
           torch.randn(frame, generator=g))
    return ins + ((torch.randn(frame, generator=g),) if context_noise > 0 else ())


def export_frame_graph(model, path: str, times: list[float], context_noise: float) -> dict:
    """Writes the frame graph to path; returns its manifest entry's io ({"inputs", "outputs", "times"})."""
    from nextframe.export.onnx import OPSET, quiet_export

    module = FrameStep(model, times, context_noise)
    inputs, outputs = frame_io_specs(model, context_noise)
    quiet_export(module, example_inputs(model, context_noise), path, [s["name"] for s in inputs],
                 [s["name"] for s in outputs])
    return {"opset": OPSET, "times": [float(t) for t in times], "inputs": inputs, "outputs": outputs}


def check_frame_parity(model, path: str, times: list[float], context_noise: float) -> dict:
    """The graph in ONNX Runtime (CPU) against FrameStep in PyTorch on the export example: the max abs difference of the
    frame (both snapped: a pixel that lands on another colour shows as a large difference) and equality of the rest."""
    import onnxruntime as ort

    module = FrameStep(model, times, context_noise)
    ins = example_inputs(model, context_noise, seed=1)
    with torch.no_grad():
        want = [t.numpy() for t in module(*ins)]
    names = [s["name"] for s in frame_io_specs(model, context_noise)[0]]
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: t.numpy() for n, t in zip(names, ins)})
    return {"frame_max_abs": float(np.abs(want[0] - got[0]).max()),
            "context_max_abs": float(np.abs(want[1] - got[1]).max()),
            "actions_equal": bool(np.array_equal(want[2], got[2])), "non_finite": int(got[3][0])}
