"""fp16 / bf16 copies of an fp32 ONNX graph, for TensorRT's strongly typed networks: TensorRT 11 has no
precision flags, so the type a tensor has in the graph is the type TensorRT computes it in.

to_lowp(model, "fp16") returns a graph that computes in fp16 (or bf16) behind the same fp32 inputs and outputs:
Casts at the boundaries, float initializers and constants stored in the low type (finite values clamped to its
range, so a -3.4e38 mask stays finite), and these nodes kept in fp32, with Casts around them:
- KEEP_FP32_OPS: normalisations, softmax and sum/mean reductions (sums of squares and of exponentials), Exp,
  Log, Pow (range), Range and CumSum (exact integers past 2048);
- the small float subgraphs that feed Sin/Cos (the noise-level embedding: t times frequencies of up to ~1e3
  needs fp32's 24 bits) and comparisons (a threshold decision must not flip with rounding), walked back from
  those nodes to the first matrix product or convolution while every tensor holds <= CONE_MAX_VALUES values.
A node computes in the low type only where its op's ONNX schema, at the graph's opset, allows that type for its
float inputs and outputs; bf16 graphs are first converted to opset 22, the first with bf16 Conv, Sin/Cos and
InstanceNormalization. The result passes onnx.checker's full check (strict shape inference).

emulate_in_fp32(lowp_model) is how it is checked without a GPU: the same graph in fp32 with every low-type tensor
rounded through Cast(low) -> Cast(float), which ONNX Runtime CPU runs (its CPU kernels take no bf16).
Compared with the fp32 graph, it gives the error the conversion adds (tests/test_tensorrt.py).
"""
from __future__ import annotations

import collections

import ml_dtypes  # an onnx dependency
import numpy as np
import onnx
from onnx import TensorProto, defs, helper, numpy_helper, shape_inference, version_converter

LOWP_TYPES = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
FLOAT = TensorProto.FLOAT
KEEP_FP32_OPS = frozenset({
    "LayerNormalization", "GroupNormalization", "InstanceNormalization", "BatchNormalization", "RMSNormalization",
    "LpNormalization", "MeanVarianceNormalization", "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
    "ReduceProd", "Exp", "Log", "Pow", "Range", "CumSum",
    # their output type comes from an attribute this converter does not rewrite
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "EyeLike", "Bernoulli", "Multinomial",
})
CONE_SINKS = frozenset({"Sin", "Cos", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal"})
HEAVY_OPS = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum", "Attention"})
CONE_MAX_VALUES = 1 << 16
BF16_OPSET = 22
_TYPE_STR = {FLOAT: "tensor(float)", TensorProto.FLOAT16: "tensor(float16)", TensorProto.BFLOAT16: "tensor(bfloat16)"}
_SUFFIX = {FLOAT: "fp32", TensorProto.FLOAT16: "fp16", TensorProto.BFLOAT16: "bf16"}


_NP_TYPE = {FLOAT: np.float32, TensorProto.FLOAT16: np.float16, TensorProto.BFLOAT16: ml_dtypes.bfloat16}


def _round_to(values: np.ndarray, elem_type: int) -> np.ndarray:
    """fp32 values in elem_type (round to nearest even); finite values stay finite (clamped to the type's max)."""
    top = float(ml_dtypes.finfo(_NP_TYPE[elem_type]).max)
    v = np.asarray(values, np.float32)
    v = np.where(np.isfinite(v), np.clip(v, -top, top), v)
    return v.astype(_NP_TYPE[elem_type])


def _fresh_names(graph: onnx.GraphProto):
    """A function giving names no tensor or node of graph has (nor any name it gave before)."""
    used = {x for n in graph.node for x in list(n.input) + list(n.output) + [n.name]}
    used |= {t.name for t in graph.initializer} | {v.name for v in list(graph.input) + list(graph.output)}

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        return name

    return fresh


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _check_convertible(model: onnx.ModelProto) -> None:
    g = model.graph
    if model.functions:
        raise ValueError(f"onnx_lowp: local functions are not converted ({model.functions[0].name})")
    for t in g.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            raise ValueError(f"onnx_lowp: initializer '{t.name}' has external data; load it into the model first")
    for n in g.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
            raise ValueError(f"onnx_lowp: control flow ({n.op_type} node '{n.name}') is not converted")
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            raise ValueError("onnx_lowp: the graph has Q/DQ nodes, whose types set its precision already; "
                             "build it as int8/fp8, or convert the unquantized graph")
    for v in list(g.input) + list(g.output):
        if v.type.tensor_type.elem_type in (TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE):
            raise ValueError(f"onnx_lowp: graph input/output '{v.name}' is "
                             f"{TensorProto.DataType.Name(v.type.tensor_type.elem_type)} (expected fp32 or integer)")


def _typed(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int], dict[str, int | None]]:
    """(model with inferred value_info, elem type per tensor, number of values per tensor or None)."""
    model = shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    g = model.graph
    types, numel = {}, {}
    for v in list(g.input) + list(g.output) + list(g.value_info):
        tt = v.type.tensor_type
        types[v.name] = tt.elem_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim] if tt.HasField("shape") else None
        numel[v.name] = None if dims is None or min(dims, default=1) < 0 else int(np.prod(dims, dtype=np.int64))
    for t in g.initializer:
        types[t.name], numel[t.name] = t.data_type, int(np.prod(t.dims, dtype=np.int64))
    for n in g.node:
        for o in n.output:
            if o and o not in types:
                raise ValueError(f"onnx_lowp: shape inference gives no type for '{o}' ({n.op_type} node '{n.name}')")
    return model, types, numel


def _bindings(node: onnx.NodeProto, schema) -> tuple[list[str], list[str]]:
    """The schema's type string (a type parameter like "T", or a literal like "tensor(float)") of each input and
    output of node; variadic formals cover the rest."""
    def bind(formals, actuals) -> list[str]:
        out = []
        for i in range(len(actuals)):
            if i < len(formals):
                out.append(formals[i].type_str)
            elif formals and formals[-1].option == defs.OpSchema.FormalParameterOption.Variadic:
                out.append(formals[-1].type_str)
            else:
                raise ValueError(f"onnx_lowp: {node.op_type} node '{node.name}' has more inputs or outputs than its schema")
        return out

    return bind(schema.inputs, node.input), bind(schema.outputs, node.output)


def _kept_cones(g: onnx.GraphProto, types: dict, numel: dict) -> set[int]:
    """Indices of the nodes kept fp32 around Sin/Cos and comparisons (module docstring)."""
    producer = {o: i for i, n in enumerate(g.node) for o in n.output if o}
    small = lambda name: types.get(name) != FLOAT or (numel.get(name) is not None and numel[name] <= CONE_MAX_VALUES)
    kept: set[int] = set()
    for i, n in enumerate(g.node):
        if n.op_type not in CONE_SINKS or not all(small(x) for x in n.input if x):
            continue
        kept.add(i)
        stack = [x for x in n.input if x and types.get(x) == FLOAT]
        while stack:
            j = producer.get(stack.pop())
            if j is None or j in kept:
                continue
            p = g.node[j]
            if p.op_type in HEAVY_OPS or not all(small(o) for o in p.output if o):
                continue
            kept.add(j)
            stack += [x for x in p.input if x and types.get(x) == FLOAT]
    return kept


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    """The fp32 value of a Constant node, or None when it is not a float32 constant."""
    for a in node.attribute:
        if a.name == "value" and a.t.data_type == FLOAT:
            return numpy_helper.to_array(a.t)
        if a.name == "value_float":
            return np.array(a.f, np.float32)
        if a.name == "value_floats":
            return np.array(a.floats, np.float32)
    return None


def to_lowp(model: onnx.ModelProto, precision: str) -> tuple[onnx.ModelProto, dict]:
    """(converted copy of model, report). report: {"precision", "opset", "n_lowp" (nodes with a low-type
    output), "n_fp32" (nodes with a float output kept fp32), "fp32_ops" (those by op), "n_casts" (Cast nodes
    added), "n_lowp_constants" (initializers stored in the low type)}. ValueError (one line) for a graph this
    does not convert."""
    if precision not in LOWP_TYPES:
        raise ValueError(f"onnx_lowp: unknown precision '{precision}' (expected {', '.join(LOWP_TYPES)})")
    lowp = LOWP_TYPES[precision]
    _check_convertible(model)
    src = onnx.ModelProto()
    src.CopyFrom(model)
    if precision == "bf16" and _opset(src) < BF16_OPSET:
        src = version_converter.convert_version(src, BF16_OPSET)
    src, types, numel = _typed(src)
    g, opset = src.graph, _opset(src)
    kept_cones = _kept_cones(g, types, numel)

    fresh = _fresh_names(g)
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer if t.data_type == FLOAT}
    consts.update({n.output[0]: v for n in g.node if n.op_type == "Constant" and (v := _constant_value(n)) is not None})
    cur = dict(types)  # type of each tensor in the new graph
    nodes: list[onnx.NodeProto] = []
    new_inits: list[onnx.TensorProto] = []
    cast_of: dict[tuple[str, int], str] = {}
    n_lowp, n_fp32, fp32_ops = 0, 0, collections.Counter()
    cast_names = set()
    typed_by_hand = set()  # outputs of ops without an ONNX schema: inference cannot type them again

    def as_type(name: str, t: int) -> str:
        if cur[name] == t:
            return name
        if (name, t) not in cast_of:
            new = fresh(f"{name}_{_SUFFIX[t]}")
            if name in consts and t == lowp:  # stored converted: no Cast at run time
                new_inits.append(numpy_helper.from_array(_round_to(consts[name], t), new))
            else:
                nodes.append(helper.make_node("Cast", [name], [new], to=t, name=fresh(f"lowp_cast_{new}")))
                cast_names.add(nodes[-1].name)
            cast_of[(name, t)], cur[new] = new, t
        return cast_of[(name, t)]

    for i, original in enumerate(g.node):
        node = onnx.NodeProto()
        node.CopyFrom(original)
        if node.op_type == "Constant":  # a source: consumers take a converted initializer when they need one
            nodes.append(node)
            continue
        schema = None
        if node.domain in ("", "ai.onnx"):
            try:
                schema = defs.get_schema(node.op_type, opset, "")
            except defs.SchemaError:
                schema = None
        has_float = any(x and types.get(x) == FLOAT for x in node.output)  # what the report counts
        if schema is None:  # another domain: everything as it was
            node.input[:] = [as_type(x, types[x]) if x else x for x in node.input]
            typed_by_hand.update(node.output)
            n_fp32 += has_float
            fp32_ops[node.op_type] += has_float
            nodes.append(node)
            continue
        ins, outs = _bindings(node, schema)
        allowed = {tc.type_param_str: set(tc.allowed_type_strs) for tc in schema.type_constraints}
        bound = list(zip(ins, node.input)) + list(zip(outs, node.output))
        float_params = {p for p, x in bound if x and p in allowed and types.get(x) == FLOAT}
        eligible = i not in kept_cones and node.op_type not in KEEP_FP32_OPS and not any(
            s.startswith(("seq(", "optional(")) for p in float_params for s in allowed[p])
        target: dict[str, int] = {}
        for p, x in bound:
            if p not in float_params or p in target:
                continue
            if p not in outs:  # bound to inputs only (Cast's input, Resize's roi, Shape): take them as they are
                now = {cur[y] for q, y in zip(ins, node.input) if y and q == p}
                if len(now) == 1 and _TYPE_STR.get(next(iter(now))) in allowed[p]:
                    target[p] = next(iter(now))
                    continue
            target[p] = lowp if eligible and _TYPE_STR[lowp] in allowed[p] else FLOAT
        node.input[:] = [as_type(x, target.get(p, types[x])) if x else x for p, x in zip(ins, node.input)]
        for p, x in zip(outs, node.output):
            if x:
                cur[x] = target.get(p, types[x])
        if node.op_type == "Cast" and target.get("T2") == lowp:
            next(a for a in node.attribute if a.name == "to").i = lowp
        if node.op_type == "ConstantOfShape" and target.get("T2") == lowp:
            value = next((a for a in node.attribute if a.name == "value"), None)
            zero = numpy_helper.to_array(value.t) if value is not None else np.zeros(1, np.float32)
            if value is not None:
                node.attribute.remove(value)
            node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(_round_to(zero, lowp))))
        if any(x and cur[x] == lowp for x in node.output):
            n_lowp += 1
        elif has_float:
            n_fp32 += 1
            fp32_ops[node.op_type] += 1
        nodes.append(node)

    # Graph outputs keep their names and types: the low-type tensor is renamed and Cast back.
    renames = {}
    for v in g.output:
        if cur[v.name] != types[v.name]:
            renames[v.name] = fresh(f"{v.name}_{_SUFFIX[cur[v.name]]}")
    for n in nodes:
        n.input[:] = [renames.get(x, x) for x in n.input]
        n.output[:] = [renames.get(x, x) for x in n.output]
    for name, inner in renames.items():
        nodes.append(helper.make_node("Cast", [inner], [name], to=types[name], name=fresh(f"lowp_cast_{name}")))
        cast_names.add(nodes[-1].name)

    # Drop what nothing reads any more (fp32 constants whose readers all take the converted copy).
    needed = {v.name for v in g.output}
    live = []
    for n in reversed(nodes):
        if any(o in needed for o in n.output):
            live.append(n)
            needed |= {x for x in n.input if x}
    inits = [t for t in g.initializer if t.name in needed] + [t for t in new_inits if t.name in needed]
    value_info = [v for v in g.value_info if v.name in typed_by_hand]
    del g.node[:], g.initializer[:], g.value_info[:]
    g.node.extend(reversed(live))
    g.initializer.extend(inits)
    g.value_info.extend(value_info)
    out = shape_inference.infer_shapes(src, check_type=True, strict_mode=True, data_prop=True)
    onnx.checker.check_model(out, full_check=True)
    report = {"precision": precision, "opset": opset, "n_lowp": n_lowp, "n_fp32": n_fp32,
              "fp32_ops": dict(sorted(fp32_ops.items())), "n_casts": sum(n.name in cast_names for n in live),
              "n_lowp_constants": sum(t.name in needed for t in new_inits)}
    return out, report


def convert_file(src_path: str, dst_path: str, precision: str) -> dict:
    """to_lowp() of the ONNX file at src_path, written to dst_path; returns the report."""
    model, report = to_lowp(onnx.load(src_path), precision)
    onnx.save(model, dst_path)
    return report


def emulate_in_fp32(model: onnx.ModelProto) -> onnx.ModelProto:
    """An fp32 graph that rounds like model (a to_lowp() result): low-type initializers and constants widened
    (exactly), and every low-type tensor replaced by its fp32 value after a round trip through the low type.
    Each op then computes in fp32 on rounded inputs and its result is rounded, as a GPU kernel that stores fp16
    or bf16 and accumulates in fp32 does."""
    lows = (TensorProto.FLOAT16, TensorProto.BFLOAT16)
    m, types, _ = _typed(model)
    g = m.graph
    fresh = _fresh_names(g)
    widen = lambda t: numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name)
    inits = [widen(t) if t.data_type in lows else t for t in g.initializer]
    nodes = []
    for original in g.node:
        n = onnx.NodeProto()
        n.CopyFrom(original)
        for a in n.attribute:  # Constant and ConstantOfShape values
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type in lows:
                a.t.CopyFrom(widen(a.t))
        nodes.append(n)
        for k, o in enumerate(n.output):
            if o and types[o] in lows:  # the op writes under another name (fp32, or low for a Cast); o: rounded
                wide, low = fresh(f"{o}_wide"), fresh(f"{o}_low")
                n.output[k] = wide
                nodes += [helper.make_node("Cast", [wide], [low], to=types[o], name=fresh(f"round_{o}")),
                          helper.make_node("Cast", [low], [o], to=FLOAT, name=fresh(f"widen_{o}"))]
    del g.node[:], g.initializer[:], g.value_info[:]
    g.node.extend(nodes)
    g.initializer.extend(inits)
    onnx.checker.check_model(m, full_check=True)
    return m
