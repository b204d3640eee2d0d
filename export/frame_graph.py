"""The frame graph: a bundle's whole next-frame step as one ONNX graph, so that a GPU runtime can keep the loop's state
on the device (csrc/ort_device_loop.h).

One run does what csrc/frame_loop.cpp does for one frame: every evaluation of the manifest's schedule with its Euler
update (the core's rounding order), the clamp, the palette snap, the push (noised to the context level) and the
context moved on by one frame. The context state goes in and its next value comes out, so a runtime binds two state
buffers and swaps them each frame (no copy, fixed addresses for CUDA graphs); per frame only the starting noise and
the action come from the host. A count of non-finite values before the clamp comes out too: a broken graph must not
pass for a dark frame (the core refuses such a frame).

Frame-stack (U-Net) bundles: the state is the last K frames and the actions that led to them (FrameStep).
Transformer bundles: the state is the frames and actions the step graph reads by `back` (prev, prev2, prev_action),
and the K/V ring is read as an input: the graph also runs the cache write on the finished frame (the kv graph's
computation) and returns that frame's k_new / v_new, which the runtime copies into the ring's slot (KvFrameStep).

Why not bind the step graph on the device instead: the sampler's arithmetic between evaluations would then need
kernels of our own for every GPU backend; inside the graph every backend (ONNX Runtime CUDA, TensorRT) runs it.
"""
from __future__ import annotations

import numpy as np
import torch

from nextframe.models.flow import euler_update
from nextframe.models.palette import snap_torch
from nextframe.models.registry import is_frame_stack

FRAME_FILE = "frame.onnx"
# graph io name -> role (csrc/graph_roles.h)
FRAME_ROLES = {"ctx_frames": "context_frames", "ctx_actions": "context_actions", "action": "action",
               "noise": "frame_noise", "push_noise": "push_noise", "frame": "frame",
               "next_ctx_frames": "next_context_frames", "next_ctx_actions": "next_context_actions",
               "non_finite": "non_finite"}
# transformer frame graphs: name -> (role, back)
KV_FRAME_ROLES = {"prev": ("context_frame", 1), "prev2": ("context_frame", 2), "prev_action": ("context_action", 1),
                  "cache_k": ("cache_k", 0), "cache_v": ("cache_v", 0), "ages": ("cache_ages", 0),
                  "action": ("action", 0), "noise": ("frame_noise", 0), "push_noise": ("push_noise", 0),
                  "frame": ("frame", 0), "next_prev": ("next_context_frame", 1), "next_prev2": ("next_context_frame", 2),
                  "next_prev_action": ("next_context_action", 1), "k_new": ("k_new", 0), "v_new": ("v_new", 0),
                  "non_finite": ("non_finite", 0)}


class FrameStep(torch.nn.Module):
    """(ctx_frames [1,K,C,H,W], ctx_actions [1,K], action [1], noise [1,C,H,W][, push_noise [1,C,H,W]]) ->
    (frame, next_ctx_frames, next_ctx_actions, non_finite [1] int64). push_noise only where context_noise > 0; frames
    snapped to palette (the manifest's frame.palette; None where the bundle does not snap)."""

    def __init__(self, model, times: list[float], context_noise: float, palette=None):
        super().__init__()
        self.model, self.times, self.context_noise = model.eval(), [float(t) for t in times], float(context_noise)
        self.palette = None if palette is None else np.asarray(palette, np.uint8)

    def finish(self, x, push_noise):
        """The sampled x -> (frame, pushed frame, non_finite), as the core finishes a frame."""
        # x - x is 0 exactly where x is finite (NaN for NaN and both infinities): plain arithmetic every GPU provider
        # runs (IsNaN / IsInf nodes may fall back to the CPU, which rules out a CUDA graph of the whole run)
        non_finite = ((x - x) != 0).to(torch.int64).sum().reshape(1)
        x = x.clamp(-1.0, 1.0)
        if self.palette is not None:
            x = snap_torch(x, self.palette)
        cn = self.context_noise
        pushed = x if push_noise is None else (1.0 - cn) * x + cn * push_noise
        return x, pushed, non_finite

    def sample(self, noise, predict):
        """The schedule's Euler steps from noise; predict(x, t [1]) -> denoised."""
        x = noise
        for t, t_next in zip(self.times[:-1], self.times[1:]):
            x = euler_update(x, predict(x, torch.full((1,), t)), t, t_next)
        return x

    def forward(self, ctx_frames, ctx_actions, action, noise, push_noise=None):
        ctx_t = torch.full((1,), self.context_noise)
        x = self.sample(noise, lambda x, t: self.model(x, t, action, ctx_frames, ctx_actions, ctx_t))
        x, pushed, non_finite = self.finish(x, push_noise)
        next_frames = torch.cat([ctx_frames[:, 1:], pushed[:, None]], dim=1)
        next_actions = torch.cat([ctx_actions[:, 1:], action.reshape(1, 1)], dim=1)
        return x, next_frames, next_actions, non_finite


class KvFrameStep(FrameStep):
    """A transformer's step: (prev[, prev2][, prev_action], cache_k, cache_v, ages, action, noise[, push_noise]) ->
    (frame, next_prev[, next_prev2][, next_prev_action], k_new, v_new, non_finite). The K/V of the finished frame
    come from the cache write (model.step with kv_only, at the context level, on the pushed frame, against the ring
    as it was before this frame), as csrc/frame_loop.cpp's push."""

    def forward(self, *inputs):
        a = dict(zip(kv_frame_input_names(self.model, self.context_noise), inputs))
        extra = {k: a[k] for k in ("prev_action", "prev2") if k in a}
        ring = (a["prev"], a["cache_k"], a["cache_v"], a["ages"])

        def predict(x, t):
            return self.model.step(x, t, a["action"], *ring, **extra)[0]

        x = self.sample(a["noise"], predict)
        x, pushed, non_finite = self.finish(x, a.get("push_noise"))
        _, k_new, v_new = self.model.step(pushed, torch.full((1,), self.context_noise), a["action"], *ring,
                                          kv_only=True, **extra)
        nexts = (pushed,) + ((a["prev"],) if "prev2" in a else ()) + ((a["action"],) if "prev_action" in a else ())
        return (x,) + nexts + (k_new, v_new, non_finite)


def kv_frame_input_names(model, context_noise: float) -> tuple[str, ...]:
    c = model.cfg
    return (("prev",) + (("prev2",) if c.needs_prev2 else ()) + (("prev_action",) if c.prev_action_input else ())
            + ("cache_k", "cache_v", "ages", "action", "noise") + (("push_noise",) if context_noise > 0 else ()))


def kv_frame_io_specs(model, context_noise: float) -> tuple[list[dict], list[dict]]:
    from nextframe.export.onnx import step_io_specs

    step_in, step_out = step_io_specs(model)
    shapes = {s["name"]: (s["dtype"], s["shape"]) for s in step_in + step_out}
    frame = shapes["x"]
    ins = [(n, *(frame if n in ("noise", "push_noise") else shapes[n])) for n in kv_frame_input_names(model, context_noise)]
    outs = ([("frame", *frame), ("next_prev", *frame)] + ([("next_prev2", *frame)] if model.cfg.needs_prev2 else [])
            + ([("next_prev_action", "int64", [1])] if model.cfg.prev_action_input else [])
            + [("k_new", *shapes["k_new"]), ("v_new", *shapes["v_new"]), ("non_finite", "int64", [1])])

    def spec(rows):
        out = []
        for n, d, shape in rows:
            role, back = KV_FRAME_ROLES[n]
            out.append({"name": n, "dtype": d, "shape": list(shape), "role": role, **({"back": back} if back else {})})
        return out

    return spec(ins), spec(outs)


def frame_io_specs(model, context_noise: float) -> tuple[list[dict], list[dict]]:
    if not is_frame_stack(model):
        return kv_frame_io_specs(model, context_noise)
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
    if not is_frame_stack(model):  # the step graph's example (a partly filled ring) in this graph's order
        from nextframe.export.onnx import example_step_inputs, step_input_names

        step = dict(zip(step_input_names(model), example_step_inputs(model, seed)))
        step["prev"] = step["prev"].clamp(-1, 1)
        if "prev2" in step:
            step["prev2"] = step["prev2"].clamp(-1, 1)
        frame = tuple(step["x"].shape)
        return tuple(step[n] if n in step else torch.randn(frame, generator=g)
                     for n in kv_frame_input_names(model, context_noise))
    frame = (1, c.channels, c.height, c.width)
    ins = (torch.rand((1, c.context, *frame[1:]), generator=g) * 2 - 1,
           torch.tensor([[(i + 1) % (c.n_actions + 1) for i in range(c.context)]]), torch.tensor([min(1, c.n_actions - 1)]),
           torch.randn(frame, generator=g))
    return ins + ((torch.randn(frame, generator=g),) if context_noise > 0 else ())


def frame_module(model, times: list[float], context_noise: float, palette=None) -> FrameStep:
    return (FrameStep if is_frame_stack(model) else KvFrameStep)(model, times, context_noise, palette)


def export_frame_graph(model, path: str, times: list[float], context_noise: float, palette=None) -> dict:
    """Writes the frame graph to path (snapping to palette, the manifest's frame.palette, where not None); returns its
    manifest entry's io ({"inputs", "outputs", "times"})."""
    from nextframe.export.onnx import OPSET, quiet_export

    module = frame_module(model, times, context_noise, palette)
    inputs, outputs = frame_io_specs(model, context_noise)
    quiet_export(module, example_inputs(model, context_noise), path, [s["name"] for s in inputs],
                 [s["name"] for s in outputs])
    return {"opset": OPSET, "times": [float(t) for t in times], "inputs": inputs, "outputs": outputs}


def check_frame_parity(model, path: str, times: list[float], context_noise: float, palette=None) -> dict:
    """The graph in ONNX Runtime (CPU) against the module in PyTorch on the export example: the max abs difference of
    the frame (both snapped: a pixel that lands on another colour shows as a large difference), of the frames the
    context carries on and of the new K/V, and equality of the integer outputs."""
    import onnxruntime as ort

    module = frame_module(model, times, context_noise, palette)
    ins = example_inputs(model, context_noise, seed=1)
    with torch.no_grad():
        want = [t.numpy() for t in module(*ins)]
    specs_in, specs_out = frame_io_specs(model, context_noise)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run([s["name"] for s in specs_out], {s["name"]: t.numpy() for s, t in zip(specs_in, ins)})
    diff = {s["name"]: float(np.abs(w - o).max()) if w.dtype.kind == "f" else None
            for s, w, o in zip(specs_out, want, got)}
    ints_equal = all(np.array_equal(w, o) for s, w, o in zip(specs_out, want, got)
                     if w.dtype.kind != "f" and s["role"] != "non_finite")
    others = [v for r, v in diff.items() if v is not None and r not in ("frame", "k_new", "v_new")]
    out = {"frame_max_abs": diff["frame"], "context_max_abs": max(others), "actions_equal": ints_equal,
           "non_finite": int(got[-1][0])}
    if "k_new" in diff:
        out["kv_max_abs"] = max(diff["k_new"], diff["v_new"])
    return out
