"""Attention maps from PyTorch and from every ONNX variant, and how well they agree.

"Does the INT8 model look where fp32 looks?" is answered on the tensors attention itself
computes, not on the logits: the Softmax of global attention (one distribution over all
positions per query position), the Sigmoid gates of SE (per channel) and CBAM (per channel,
then per position). PyTorch gives them through forward hooks on the attention modules; an
ONNX file gives them as extra graph outputs, found by structure (every Softmax, every Sigmoid
gate), so the dynamo and TorchScript exports and every precision of the same graph work alike.

In a Q/DQ graph a map that is quantized (``--exclude-preset none``) is read where the model
reads it: after its QuantizeLinear -> DequantizeLinear pair, so the agreement measures the
8-bit map the next MatMul uses, not the float value before rounding.

Agreement per site: the cosine of each image's flattened map (mean and worst over images)
and, for Softmax rows, the Jensen-Shannon divergence (base 2, so 0..1) between the reference
row and the candidate row (mean and worst over rows). A candidate row that no longer sums to
1 after Q/DQ is renormalised (negative values clipped) before the divergence.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attnvgg.config import MapLimits
from attnvgg.calibration.graph import GraphIndex
from attnvgg.onnxgraph import input_shape, load_onnx
from attnvgg.models.build import build_model
from attnvgg.runners.onnxruntime import import_ort
from attnvgg.errors import InputError

SOFTMAX = "softmax"
CHANNEL_GATE = "channel-gate"
SPATIAL_GATE = "spatial-gate"
_PASS_OPS = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast",
                       "QuantizeLinear", "DequantizeLinear"})


@dataclass
class MapSite:
    """One attention tensor: which kind, where in the model, its shape per image."""

    index: int
    kind: str             # softmax | channel-gate | spatial-gate
    module: str           # PyTorch module name (features.14) or ONNX node name
    module_type: str      # GlobalAttention, SEBlock, CBAM, or the ONNX op
    shape: list[int]      # per image, e.g. [256, 256] (queries x keys), [32], [1, 16, 16]


@dataclass
class SiteAgreement:
    site: int
    kind: str
    module: str
    cosine: float         # mean over images
    min_cosine: float     # worst image
    max_abs: float | None  # None: the candidate has NaN/Inf
    js_mean: float | None = None   # softmax rows only
    js_max: float | None = None


@dataclass
class MapAgreement:
    """Agreement of one variant's maps with the PyTorch fp32 maps."""

    variant: str
    artifact: str
    images: int
    sites: list[SiteAgreement] = field(default_factory=list)

    @property
    def min_cosine(self) -> float:
        return min((s.min_cosine for s in self.sites), default=1.0)

    @property
    def mean_cosine(self) -> float:
        return float(np.mean([s.cosine for s in self.sites])) if self.sites else 1.0

    @property
    def js_mean(self) -> float | None:
        v = [s.js_mean for s in self.sites if s.js_mean is not None]
        return float(np.mean(v)) if v else None

    @property
    def js_max(self) -> float | None:
        v = [s.js_max for s in self.sites if s.js_max is not None]
        return max(v) if v else None

    def to_dict(self) -> dict:
        return {"variant": self.variant, "artifact": self.artifact, "images": self.images,
                "min_cosine": self.min_cosine, "mean_cosine": self.mean_cosine,
                "js_mean": self.js_mean, "js_max": self.js_max,
                "sites": [asdict(s) for s in self.sites]}


# ------------------------------------------------------------------------------ PyTorch

def torch_maps(model: Any, x: np.ndarray) -> tuple[list[MapSite], list[np.ndarray], np.ndarray]:
    """(sites, maps with the batch axis first, logits) of one forward pass, in call order."""
    import torch

    from attnvgg.models.attention import ChannelAttention, GlobalAttention, SEBlock, SpatialAttention

    sites: list[MapSite] = []
    maps: list[np.ndarray] = []
    handles = []

    def add(kind: str, name: str, mtype: str, value: Any) -> None:
        v = value.detach().float().cpu().numpy()
        sites.append(MapSite(len(sites), kind, name, mtype, list(v.shape[1:])))
        maps.append(v)

    def global_hook(name: str):
        def fn(module: GlobalAttention, inputs: Any, output: Any) -> None:
            xin = inputs[0]
            b, _, h, w = xin.shape
            q = module.conv_query(xin).reshape(b, -1, h * w).permute(0, 2, 1)
            k = module.conv_key(xin).reshape(b, -1, h * w)
            add(SOFTMAX, name, "GlobalAttention", torch.softmax(torch.bmm(q, k), dim=-1))
        return fn

    def gate_hook(kind: str, name: str, mtype: str):
        def fn(module: Any, inputs: Any, output: Any) -> None:
            add(kind, name, mtype, output)
        return fn

    for name, m in model.named_modules():
        if isinstance(m, GlobalAttention):
            handles.append(m.register_forward_hook(global_hook(name)))
        elif isinstance(m, SEBlock):
            handles.append(m.fc.register_forward_hook(gate_hook(CHANNEL_GATE, name, "SEBlock")))
        elif isinstance(m, ChannelAttention):
            handles.append(m.register_forward_hook(gate_hook(CHANNEL_GATE, name.rsplit(".", 1)[0], "CBAM")))
        elif isinstance(m, SpatialAttention):
            handles.append(m.register_forward_hook(gate_hook(SPATIAL_GATE, name.rsplit(".", 1)[0], "CBAM")))
    try:
        with torch.no_grad():
            logits = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).float().numpy()
    finally:
        for h in handles:
            h.remove()
    # SE's gate is (B, C): the same values as CBAM's (B, C, 1, 1) channel gate
    return sites, maps, logits


def gradcam(model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of the predicted class at the last convolution outside attention blocks.

    Returns (maps (B, H, W) at the input resolution, scaled to 0..1 per image; predicted class).
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    from attnvgg.models.attention import CBAM, GlobalAttention, SEBlock

    inside = set()
    for name, m in model.named_modules():
        if isinstance(m, (GlobalAttention, SEBlock, CBAM)):
            inside.update(n for n, _ in m.named_modules(prefix=name))
    convs = [m for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n not in inside]
    if not convs:
        raise InputError("Grad-CAM needs a convolution in the model, found none", "explain a CNN")
    store: dict[str, Any] = {}

    def fwd(module: Any, inputs: Any, output: Any) -> None:
        store["act"] = output
        output.register_hook(lambda g: store.__setitem__("grad", g))

    h = convs[-1].register_forward_hook(fwd)
    try:
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        with torch.enable_grad():
            logits = model(xt)
            pred = logits.argmax(1)
            model.zero_grad(set_to_none=True)
            logits.gather(1, pred[:, None]).sum().backward()
    finally:
        h.remove()
    act, grad = store["act"].detach(), store["grad"].detach()
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * F.relu(act)).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)[:, 0]
    cam = cam / cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    model.zero_grad(set_to_none=True)
    return cam.numpy(), pred.numpy()


# ---------------------------------------------------------------------------------- ONNX

def _read_point(idx: Any, tensor: str) -> str:
    """Where consumers read ``tensor``: after a Q -> DQ pair if it is quantized."""
    consumers = idx.consumers.get(tensor, [])
    if len(consumers) == 1 and consumers[0].op_type == "QuantizeLinear":
        dqs = idx.consumers.get(consumers[0].output[0], [])
        if dqs and all(d.op_type == "DequantizeLinear" for d in dqs):
            return dqs[0].output[0]
    return tensor


def _is_gate(idx: Any, node: Any) -> bool:
    """A Sigmoid whose value (through shape/Q/DQ/Cast ops) multiplies an activation."""
    _, ends = idx.walk_down(node.output[0], _PASS_OPS)
    return any(c.op_type == "Mul" and not any(i in idx.constants for i in c.input) for c in ends)


def onnx_map_tensors(model: Any) -> list[tuple[str, str, str]]:
    """(kind, node name, tensor to read) for every Softmax and Sigmoid gate, in graph order.

    The kind of a gate follows from its shape: one value per channel (N, C[, 1, 1]) is a channel
    gate, one value per position (N, 1, H, W) a spatial gate.
    """
    import onnx

    idx = GraphIndex.build(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
                  for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    except Exception:  # noqa: BLE001 - kinds then come from the values' shapes at run time
        shapes = {}
    out = []
    for n in model.graph.node:
        if n.op_type == "Softmax":
            out.append((SOFTMAX, n.name or n.output[0], _read_point(idx, n.output[0])))
        elif n.op_type in ("Sigmoid", "HardSigmoid") and _is_gate(idx, n):
            s = shapes.get(n.output[0], [])
            kind = SPATIAL_GATE if len(s) == 4 and s[1] == 1 and s[2] * s[3] > 1 else CHANNEL_GATE
            out.append((kind, n.name or n.output[0], _read_point(idx, n.output[0])))
    return out


def onnx_maps(path: str | os.PathLike, x: np.ndarray, threads: int | None = None
              ) -> tuple[list[tuple[str, str]], list[np.ndarray], np.ndarray]:
    """Run ``path`` with its attention tensors as extra outputs: ((kind, node) list, maps, logits)."""
    import tempfile

    import onnx


    model = load_onnx(path)
    found = onnx_map_tensors(model)
    existing = {o.name for o in model.graph.output}
    logits_name = model.graph.output[0].name
    for _, _, t in found:
        if t not in existing:
            model.graph.output.append(onnx.ValueInfoProto(name=t))
            existing.add(t)
    in_name = input_shape(model)[0]
    ort = import_ort()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory(prefix="attnvgg-maps-") as tmp:
        p = Path(tmp) / "maps.onnx"
        onnx.save(model, str(p))
        del model
        try:
            sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise InputError(f"ONNX Runtime cannot load {path} with its attention outputs ({first})",
                             "check it is a model attnvgg export/convert/calibrate wrote") from exc
        names = [logits_name] + [t for _, _, t in found]
        try:
            values = sess.run(names, {in_name: np.ascontiguousarray(x, dtype=np.float32)})
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise InputError(f"ONNX Runtime cannot run {path} on inputs of shape {list(x.shape)} ({first})",
                             "feed images preprocessed to the model's input size") from exc
    logits = np.asarray(values[0], dtype=np.float32)
    maps = [np.asarray(v, dtype=np.float32) for v in values[1:]]
    return [(k, n) for k, n, _ in found], maps, logits


# ----------------------------------------------------------------------------- agreement

def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (base 2) between the rows of ``p`` and ``q`` (last axis)."""
    p = np.clip(np.asarray(p, np.float64), 0, None)
    q = np.clip(np.asarray(q, np.float64), 0, None)
    p = p / np.maximum(p.sum(-1, keepdims=True), 1e-300)
    q = q / np.maximum(q.sum(-1, keepdims=True), 1e-300)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 0, a * (np.log2(a) - np.log2(np.where(b > 0, b, 1))), 0.0)
        return t.sum(-1)

    return np.clip(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0, 1.0)


def site_agreement(site: MapSite, ref: np.ndarray, got: np.ndarray) -> SiteAgreement:
    n = ref.shape[0]
    r = np.asarray(ref, np.float64).reshape(n, -1)
    g = np.asarray(got, np.float64).reshape(n, -1)
    if r.shape != g.shape:
        raise InputError(f"attention map {site.module} has {g.shape[1]} values per image, the reference "
                         f"{r.shape[1]}", "compare a model with the PyTorch model it was exported from")
    finite = np.isfinite(g).all(axis=1)
    denom = np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1)
    cos = np.where(finite & (denom > 0), (r * np.nan_to_num(g)).sum(1) / np.where(denom > 0, denom, 1), 0.0)
    out = SiteAgreement(site.index, site.kind, site.module, float(cos.mean()), float(cos.min()),
                        float(np.abs(r - g).max()) if finite.all() else None)
    if site.kind == SOFTMAX:
        keys = ref.shape[-1]
        js = js_divergence(np.asarray(ref).reshape(-1, keys), np.nan_to_num(np.asarray(got)).reshape(-1, keys))
        out.js_mean, out.js_max = float(js.mean()), float(js.max())
    return out


def match_sites(ref_sites: list[MapSite], ref_maps: list[np.ndarray], found: list[tuple[str, str]],
                maps: list[np.ndarray], artifact: str) -> list[np.ndarray]:
    """The candidate's maps in the reference's order, shaped like the reference maps."""
    if len(found) != len(ref_sites):
        raise InputError(f"{artifact} has {len(found)} attention tensors (Softmax / Sigmoid gates), the PyTorch "
                         f"model {len(ref_sites)}", "compare a model with the PyTorch model it was exported from")
    out = []
    for site, ref, (kind, node), got in zip(ref_sites, ref_maps, found, maps):
        if got.size != ref.size:
            raise InputError(f"attention tensor {node} of {artifact} has shape {list(got.shape)}, PyTorch's "
                             f"{site.module} {list(ref.shape)}", "compare a model with its own PyTorch model")
        out.append(got.reshape(ref.shape))
    return out


def compare_maps(artifacts: dict[str, str | os.PathLike], model: Any, x: np.ndarray
                 ) -> tuple[list[MapSite], list[np.ndarray], dict[str, MapAgreement], dict[str, list[np.ndarray]]]:
    """PyTorch fp32 maps of ``x`` and each artifact's agreement with them (variant -> result)."""
    ref_sites, ref_maps, _ = torch_maps(model, x)
    if not ref_sites:
        raise InputError("the model has no attention block (GlobalAttention, SE, CBAM)",
                         "attention maps need a model with attention; drop --attention-maps")
    results: dict[str, MapAgreement] = {}
    all_maps: dict[str, list[np.ndarray]] = {}
    for variant, path in artifacts.items():
        found, maps, _ = onnx_maps(path, x)
        maps = match_sites(ref_sites, ref_maps, found, maps, str(path))
        res = MapAgreement(variant, str(path), int(x.shape[0]))
        res.sites = [site_agreement(s, r, g) for s, r, g in zip(ref_sites, ref_maps, maps)]
        results[variant] = res
        all_maps[variant] = maps
    return ref_sites, ref_maps, results, all_maps


def check_limits(res: MapAgreement, limits: MapLimits) -> list[str]:
    """Reasons the maps fail the limits (empty: they pass)."""
    why = []
    for s in res.sites:
        if s.min_cosine < limits.min_cosine:
            why.append(f"{s.kind} map of {s.module}: cosine {s.min_cosine:.4f} < {limits.min_cosine:g}")
        if s.js_mean is not None and s.js_mean > limits.max_js:
            why.append(f"{s.kind} map of {s.module}: mean JS divergence {s.js_mean:.4f} > {limits.max_js:g}")
    return why


def validate_maps(artifact: str | os.PathLike, model_spec: Any, x: np.ndarray, limits: MapLimits,
                  variant: str = "candidate") -> tuple[MapAgreement, list[str]]:
    """``validate --attention-maps``: the artifact's maps against PyTorch fp32 on ``x``, and why they fail."""
    _, _, results, _ = compare_maps({variant: artifact}, build_model(model_spec), x)
    res = results[variant]
    return res, check_limits(res, limits)
