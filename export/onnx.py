"""torch -> ONNX for the next-frame models: a `step` graph for the denoising calls and, for the transformer,
a `kv` graph for the cache write. Every graph input and output is declared with its role (csrc/graph_roles.h,
docs/formats.md), which is what the runtime binds by.

Frame-stack (U-Net) models: one stateless `step` graph, (x, t, action, ctx_frames, ctx_actions, ctx_t) ->
denoised; the runtime keeps the frames (context_frames role), so there is no cache and no kv graph.

Transformer models:

The runtime calls `step` n_steps times per frame to denoise (reading `denoised`, the predicted clean frame),
then `kv` once on the finished frame at the context-noise level to get that frame's K/V (`k_new`, `v_new`),
so the runtime owns the cache and the graphs are stateless. `kv` takes the same inputs and stops after the
last block's K/V projection: the last block's attention and MLP and the output head only serve `denoised`
(about a fifth of a step's work at depth 5). `step` alone can do both (its k_new/v_new are the same
values), which is what a bundle without `kv` gets.
Shapes are fixed (batch 1, n_slots = context + 1: one spare slot lets the loop roll a speculative frame back
without losing the oldest frame of the window). Opset 20 for its Gelu op: one fused kernel in ONNX Runtime
instead of the ten ops of the tanh formula (measured: 6% faster step on the 2-core CPU).
"""
from __future__ import annotations

import warnings

import torch

from nextframe.models.dit import NextFrameDiT
from nextframe.models.registry import is_frame_stack

OPSET = 20
# Bump when the exported graphs change for the same weights: the cached export of the shipped model
# (nextframe.cli.default_bundle) is keyed by it. 2: the leaner step graph (one modulation Gemm, [N, D] tokens).
GRAPH_REVISION = 2
STEP_INPUTS = ("x", "t", "action", "prev", "cache_k", "cache_v", "ages")
PREV_ACTION_INPUT = "prev_action"  # appended for models with prev_action_input
PREV2_INPUT = "prev2"  # appended (last) for models with a motion refiner (config.needs_prev2)
STEP_OUTPUTS = ("denoised", "k_new", "v_new")
KV_OUTPUTS = ("k_new", "v_new")
# (role, back) of every transformer graph input and output (docs/formats.md)
DIT_ROLES = {"x": ("noisy_frame", 0), "t": ("noise_level", 0), "action": ("action", 0), "prev": ("context_frame", 1),
             "cache_k": ("cache_k", 0), "cache_v": ("cache_v", 0), "ages": ("cache_ages", 0),
             "prev_action": ("context_action", 1), "prev2": ("context_frame", 2),
             "denoised": ("prediction", 0), "k_new": ("k_new", 0), "v_new": ("v_new", 0)}
FRAME_STACK_INPUTS = ("x", "t", "action", "ctx_frames", "ctx_actions", "ctx_t")
FRAME_STACK_ROLES = {"x": "noisy_frame", "t": "noise_level", "action": "action", "ctx_frames": "context_frames",
                     "ctx_actions": "context_actions", "ctx_t": "context_noise_level", "denoised": "prediction"}


def with_roles(specs: list[dict], roles: dict) -> list[dict]:
    out = []
    for s in specs:
        role = roles[s["name"]]
        role, back = role if isinstance(role, tuple) else (role, 0)
        out.append({**s, "role": role, **({"back": back} if back else {})})
    return out


def step_input_names(model) -> tuple[str, ...]:
    if is_frame_stack(model):
        return FRAME_STACK_INPUTS
    cfg = model.cfg
    return STEP_INPUTS + ((PREV_ACTION_INPUT,) if cfg.prev_action_input else ()) + ((PREV2_INPUT,) if cfg.needs_prev2 else ())


def step_by_name(model, inputs, kv_only: bool = False):
    """The graph's outputs from the graph inputs in step_input_names order: model.step (graph input names
    are its argument names), or for a frame-stack model (denoised,) from its forward."""
    if is_frame_stack(model):
        return (model(*inputs),)
    return model.step(**dict(zip(step_input_names(model), inputs)), kv_only=kv_only)


def step_output_names(model) -> tuple[str, ...]:
    return ("denoised",) if is_frame_stack(model) else STEP_OUTPUTS


class _Graph(torch.nn.Module):
    """model.step as a graph: (denoised, k_new, v_new), or with kv_only just (k_new, v_new)."""

    def __init__(self, model: NextFrameDiT, kv_only: bool):
        super().__init__()
        self.model, self.kv_only = model, kv_only

    def forward(self, *inputs):
        if is_frame_stack(self.model):
            return step_by_name(self.model, inputs)[0]
        denoised, k, v = step_by_name(self.model, inputs, self.kv_only)
        return (k, v) if self.kv_only else (denoised, k, v)


def n_slots(model: NextFrameDiT) -> int:
    return model.cfg.context + 1


def frame_stack_io_specs(model) -> tuple[list[dict], list[dict]]:
    c = model.cfg
    frame = [1, c.channels, c.height, c.width]
    inputs = [("x", "float32", frame), ("t", "float32", [1]), ("action", "int64", [1]),
              ("ctx_frames", "float32", [1, c.context, *frame[1:]]), ("ctx_actions", "int64", [1, c.context]),
              ("ctx_t", "float32", [1])]
    spec = lambda rows: [{"name": n, "dtype": d, "shape": s} for n, d, s in rows]  # noqa: E731
    return with_roles(spec(inputs), FRAME_STACK_ROLES), with_roles(spec([("denoised", "float32", frame)]), FRAME_STACK_ROLES)


def step_io_specs(model) -> tuple[list[dict], list[dict]]:
    """The step graph's inputs and outputs: name, dtype, shape, role (and back)."""
    if is_frame_stack(model):
        return frame_stack_io_specs(model)
    c = model.cfg
    cache = [c.depth, 1, c.heads, n_slots(model), c.tokens_per_frame, c.head_dim]
    kv = [c.depth, 1, c.heads, c.tokens_per_frame, c.head_dim]
    frame = [1, c.channels, c.height, c.width]
    inputs = [("x", "float32", frame), ("t", "float32", [1]), ("action", "int64", [1]), ("prev", "float32", frame),
              ("cache_k", "float32", cache), ("cache_v", "float32", cache), ("ages", "int64", [n_slots(model)])]
    if c.prev_action_input:
        inputs.append((PREV_ACTION_INPUT, "int64", [1]))
    if c.needs_prev2:
        inputs.append((PREV2_INPUT, "float32", frame))
    outputs = [("denoised", "float32", frame), ("k_new", "float32", kv), ("v_new", "float32", kv)]
    spec = lambda rows: [{"name": n, "dtype": d, "shape": s} for n, d, s in rows]  # noqa: E731
    return with_roles(spec(inputs), DIT_ROLES), with_roles(spec(outputs), DIT_ROLES)


def example_step_inputs(model, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A fixed input with a partly filled ring (one empty slot, one out-of-window slot), for export and parity;
    for a frame-stack model, frames in [-1, 1] and the context actions including no_action."""
    g = torch.Generator().manual_seed(seed)
    if is_frame_stack(model):
        c = model.cfg
        frame = (1, c.channels, c.height, c.width)
        ctx_actions = torch.tensor([[(i + 1) % (c.n_actions + 1) for i in range(c.context)]])
        return (torch.randn(frame, generator=g), torch.tensor([0.7]), torch.tensor([min(2, c.n_actions - 1)]),
                torch.rand((1, c.context, *frame[1:]), generator=g) * 2 - 1, ctx_actions, torch.tensor([0.05]))
    ins, _ = step_io_specs(model)
    shapes = {s["name"]: s["shape"] for s in ins}
    s = n_slots(model)
    ages = torch.tensor([(i % (s + 1)) for i in range(s)], dtype=torch.long)  # 0 (empty) .. context, then s % ..
    ages[-1] = s  # older than the window: must be ignored
    ins = (torch.randn(shapes["x"], generator=g), torch.tensor([0.7]), torch.tensor([min(2, model.cfg.n_actions - 1)]),
           torch.randn(shapes["prev"], generator=g), torch.randn(shapes["cache_k"], generator=g), torch.randn(shapes["cache_v"], generator=g), ages)
    if model.cfg.prev_action_input:
        ins += (torch.tensor([min(1, model.cfg.n_actions - 1)]),)
    if model.cfg.needs_prev2:
        ins += (torch.randn(shapes[PREV2_INPUT], generator=g),)
    return ins


def kv_io_specs(model: NextFrameDiT) -> tuple[list[dict], list[dict]]:
    inputs, outputs = step_io_specs(model)
    return inputs, [o for o in outputs if o["name"] in KV_OUTPUTS]


def export_step(model, path: str) -> None:
    _export(_Graph(model.eval(), kv_only=False), model, path, step_output_names(model))


def export_kv(model: NextFrameDiT, path: str) -> None:
    _export(_Graph(model.eval(), kv_only=True), model, path, KV_OUTPUTS)


def _export(module: torch.nn.Module, model: NextFrameDiT, path: str, outputs: tuple[str, ...]) -> None:
    quiet_export(module, example_step_inputs(model), path, list(step_input_names(model)), list(outputs))
    _restore_unused_inputs(model, path)


def quiet_export(module: torch.nn.Module, inputs: tuple, path: str, input_names: list[str], output_names: list[str]) -> None:
    """torch.onnx.export, TorchScript exporter, fixed shapes, at OPSET."""
    with warnings.catch_warnings():
        # torch 2.13 flags the TorchScript exporter as legacy; it is the one that gives plain, fixed-shape
        # graphs ORT and TensorRT both take without onnxscript
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        # group_norm's batch-size check reads a shape as a bool while tracing (fixed shapes: harmless)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(module, inputs, path, input_names=input_names, output_names=output_names,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)


def _restore_unused_inputs(model: NextFrameDiT, path: str) -> None:
    """The exporter drops inputs a graph does not read (the kv graph skips the motion refiner, the only
    reader of prev2 there). Every graph keeps the step graph's full input list (docs/formats.md), so they
    go back in as declared, unread inputs, in step_input_names order."""
    import onnx

    m = onnx.load(path)
    have = {i.name for i in m.graph.input}
    specs = {s["name"]: s for s in step_io_specs(model)[0]}
    if all(n in have for n in specs):
        return
    types = {"float32": onnx.TensorProto.FLOAT, "int64": onnx.TensorProto.INT64}
    by_name = {i.name: i for i in m.graph.input}
    ordered = [by_name.get(n) or onnx.helper.make_tensor_value_info(n, types[specs[n]["dtype"]], specs[n]["shape"])
               for n in step_input_names(model)]
    del m.graph.input[:]
    m.graph.input.extend(ordered)
    onnx.save(m, path)
