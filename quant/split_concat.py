"""Q-Diffusion's split quantization as an ONNX rewrite: a convolution whose input concatenates tensors of very
different ranges is split into one convolution per part, summed, so each part gets its own activation scale.

In the frame-stack U-Net every up block's 1x1 shortcut reads one (the upsampled features next to the skip
connection, Q-Diffusion's "shortcut" case). Its input convolution, which once read the preconditioned noisy
change (about +-4 at t = 1) stacked with context frames in [-1, 1], is two convolutions by construction now
(models/unet.py, CellStem), and stays float anyway. With one
scale for the whole concatenation, the part with the smaller range is quantized with the larger one's step.
Conv(concat(a, b), W) + B == Conv(a, W[:, :ca]) + Conv(b, W[:, ca:]) + B exactly in float; only quantization
sees the difference.
"""
from __future__ import annotations

import numpy as np


def _concat_convs(model):
    """(conv node, concat node) pairs where a group-1 convolution with constant weights reads a channel concat."""
    from onnx import helper

    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name for t in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type != "Conv" or n.input[1] not in inits:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        src = producer.get(n.input[0])
        if src is not None and src.op_type == "Concat" and helper.get_attribute_value(src.attribute[0]) == 1 \
                and attrs.get("group", 1) == 1:
            out.append((n, src))
    return out


def concat_channels(model, feed: dict) -> dict[str, int]:
    """Channels of every tensor concatenated into such a convolution, found by running the graph once on feed
    (ONNX shape inference cannot follow the folding's computed reshapes)."""
    import copy

    import onnxruntime as ort
    from onnx import helper

    names = sorted({i for _, src in _concat_convs(model) for i in src.input})
    if not names:
        return {}
    probe = copy.deepcopy(model)
    for name in names:
        probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    values = sess.run(names, feed)
    return {n: int(v.shape[1]) for n, v in zip(names, values)}


def split_concat_convs(model, channels: dict[str, int], skip: set[str] | frozenset[str] = frozenset()):
    """Rewrite model (onnx.ModelProto) in place; channels from concat_channels; convolutions named in skip (those
    staying in float, where a split buys nothing) are left whole. Returns the convolutions split."""
    from onnx import helper, numpy_helper

    consumers: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    inits = {t.name: t for t in model.graph.initializer}
    pairs = {conv.output[0]: src for conv, src in _concat_convs(model)}  # output names are unique in a graph
    split, new_nodes = [], []
    drop = set()
    for n in model.graph.node:
        src = pairs.get(n.output[0])
        chans = [channels.get(i) for i in src.input] if src is not None else None
        w = numpy_helper.to_array(inits[n.input[1]]) if chans and None not in chans else None
        if w is None or sum(chans) != w.shape[1] or n.name in skip:
            new_nodes.append(n)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        parts, off = [], 0
        for k, (inp, c) in enumerate(zip(src.input, chans)):
            wname = f"{n.input[1]}_split{k}"
            model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w[:, off : off + c]), wname))
            ins = [inp, wname] + ([n.input[2]] if k == 0 and len(n.input) > 2 else [])
            out = f"{n.output[0]}_split{k}"
            new_nodes.append(helper.make_node("Conv", ins, [out], name=f"{n.name}_split{k}", **attrs))
            parts.append(out)
            off += c
        acc = parts[0]
        for k, p in enumerate(parts[1:], 1):
            out = n.output[0] if k == len(parts) - 1 else f"{n.output[0]}_sum{k}"
            new_nodes.append(helper.make_node("Add", [acc, p], [out], name=f"{n.name}_sum{k}"))
            acc = out
        consumers[src.output[0]] -= 1
        if consumers[src.output[0]] == 0:
            drop.add(src.name)
        split.append(n.name)
    del model.graph.node[:]
    model.graph.node.extend(x for x in new_nodes if x.name not in drop)
    used = {i for n in model.graph.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return split
