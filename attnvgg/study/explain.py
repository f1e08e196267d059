"""``attnvgg explain``: where the model looks, in PyTorch and in every deployed variant.

For a handful of validation images: the global-attention row of chosen query positions, SE
and CBAM channel weights, CBAM spatial maps, Grad-CAM of the predicted class (PyTorch), and
the same attention tensors from each ONNX variant with their agreement with PyTorch fp32
(``attnvgg.validate.maps``). Output: ``explain.json`` (format ``attnvgg-explain``) and one PNG
per image (rows: precisions, columns: maps, overlaid on the input), which the run and study
reports embed.

Query positions: on the built-in set, the centres of the circle and the square whose relative
position is the label (so the map shows whether the circle's position attends to the square);
on other data, the Grad-CAM peak and the image centre.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from attnvgg.artifacts import atomic_files
from attnvgg.calibration.int8 import calibrate as run_calibrate
from attnvgg.data import open_dataset, synthetic
from attnvgg.data.datasets import SyntheticDataset
from attnvgg.models.build import build_model
from attnvgg.config import CalibrateSpec, ModelSpec, PreprocessSpec
from attnvgg.errors import InputError
from attnvgg.validate.maps import CHANNEL_GATE, SOFTMAX, SPATIAL_GATE, MapSite, compare_maps, gradcam

EXPLAIN_FORMAT = "attnvgg-explain/1"
QSOFTMAX = "int8-cpu-qsoftmax"   # the deliberately broken variant: Softmax quantized too


@dataclass
class ExplainResult:
    json_path: Path
    pngs: list[Path] = field(default_factory=list)
    agreement: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0


def _queries(ds: Any, n: int, cams: np.ndarray) -> list[list[tuple[float, float, str]]]:
    """Per image: query points as (y, x) fractions of the image with a label."""
    out = []
    if isinstance(ds, SyntheticDataset):
        labels = synthetic.labels(ds.split)
        s = float(synthetic.IMAGE_SIZE)
        for i in range(n):
            t = synthetic.layout(ds.split, i, int(labels[i]))
            out.append([(t.circle[1] / s, t.circle[0] / s, "circle"), (t.square[1] / s, t.square[0] / s, "square")])
        return out
    for i in range(n):
        h, w = cams[i].shape
        py, px = np.unravel_index(int(np.argmax(cams[i])), cams[i].shape)
        out.append([((py + 0.5) / h, (px + 0.5) / w, "Grad-CAM peak"), (0.5, 0.5, "centre")])
    return out


def _query_row(attn: np.ndarray, q: tuple[float, float, str]) -> tuple[np.ndarray, int]:
    """The attention of one query position (fractions) as an (h, w) map; attn is (N, N)."""
    n = attn.shape[-1]
    side = int(round(n ** 0.5))
    if side * side != n:
        raise InputError(f"attention over {n} positions is not a square grid", "explain square inputs")
    qy, qx = min(side - 1, int(q[0] * side)), min(side - 1, int(q[1] * side))
    qi = qy * side + qx
    return attn[qi].reshape(side, side), qi


def _display_images(x: np.ndarray, pre: PreprocessSpec) -> np.ndarray:
    """Preprocessed NCHW back to 0..1 NHWC for display."""
    mean = np.asarray(pre.mean, np.float32)[None, :, None, None]
    std = np.asarray(pre.std, np.float32)[None, :, None, None]
    return np.clip(x * std + mean, 0, 1).transpose(0, 2, 3, 1)


def _columns(sites: list[MapSite], queries: list[tuple[float, float, str]]) -> list[tuple[int, Any, str]]:
    cols = []
    for s in sites:
        if s.kind == SOFTMAX:
            for q in queries:
                cols.append((s.index, q, f"{s.module} attn\nquery: {q[2]}"))
        elif s.kind == SPATIAL_GATE:
            cols.append((s.index, None, f"{s.module} CBAM\nspatial gate"))
        else:
            cols.append((s.index, None, f"{s.module} {s.module_type}\nchannel weights"))
    return cols


PANEL = 112          # pixels per map panel
LABEL_W = 170        # the row-label column
HEAD_H = 34          # column titles


def _jet(v: np.ndarray) -> np.ndarray:
    """0..1 floats -> uint8 RGB with a jet-like colour map (blue low, red high)."""
    v = np.clip(v, 0.0, 1.0)[..., None]
    rgb = np.concatenate([1.5 - np.abs(4 * v - 3), 1.5 - np.abs(4 * v - 2), 1.5 - np.abs(4 * v - 1)], axis=-1)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _resize(m: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(np.asarray(m, np.float32), mode="F").resize((size, size), Image.BILINEAR))


def _overlay(base: np.ndarray, m: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """``m`` (any 2-D size) stretched over ``base`` (PANEL x PANEL x 3 uint8), 55 % opaque."""
    lo = float(m.min()) if lo is None else lo
    hi = float(m.max()) if hi is None else hi
    v = (_resize(m, PANEL) - lo) / (hi - lo if hi > lo else 1.0)
    return (0.45 * base + 0.55 * _jet(v)).astype(np.uint8)


def _bars(v: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
    """Channel weights (0..1) as a bar chart; the reference's values as black ticks."""
    img = np.full((PANEL, PANEL, 3), 255, np.uint8)
    n = max(1, v.size)
    for i, val in enumerate(np.clip(v.reshape(-1), 0, 1)):
        x0, x1 = int(i * PANEL / n), max(int(i * PANEL / n) + 1, int((i + 1) * PANEL / n) - (1 if n < 40 else 0))
        img[PANEL - int(val * (PANEL - 4)):, x0:x1] = (46, 134, 171)
        if ref is not None:
            y = PANEL - 1 - int(np.clip(ref.reshape(-1)[i], 0, 1) * (PANEL - 4))
            img[max(0, y - 1):y + 1, x0:x1] = 0
    return img


def render_png(img: np.ndarray, cam: np.ndarray, sites: list[MapSite], rows: list[tuple[str, list[np.ndarray], str]],
               queries: list[tuple[float, float, str]], title: str) -> bytes:
    """One image's figure: row 0 PyTorch (input, Grad-CAM, maps), one row per variant (maps).

    Drawn with numpy and Pillow (a matplotlib figure of this many panels took ~9 s per image).
    """
    import io

    from PIL import Image, ImageDraw, ImageFont

    cols = _columns(sites, queries)
    ncol = 2 + len(cols)
    width, height = LABEL_W + ncol * (PANEL + 4), HEAD_H + 22 + len(rows) * (PANEL + 6)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=11)
    small = ImageFont.load_default(size=9)
    draw.text((6, 4), title, fill="black", font=font)
    base = np.asarray(Image.fromarray((img * 255).astype(np.uint8)).resize((PANEL, PANEL), Image.NEAREST))
    titles = ["input", "Grad-CAM (pred.)"] + [c[2] for c in cols]
    for c, t in enumerate(titles):
        draw.multiline_text((LABEL_W + c * (PANEL + 4), 20), t, fill="black", font=small, spacing=1)
    for r, (label, maps, note) in enumerate(rows):
        y0 = HEAD_H + 22 + r * (PANEL + 6)
        draw.multiline_text((6, y0 + PANEL // 2 - 12), f"{label}\n{note}", fill="black", font=font, spacing=2)
        panels: list[np.ndarray | None] = [base if r == 0 else None, _overlay(base, cam, 0.0, 1.0) if r == 0 else None]
        for si, q, _ in cols:
            m, kind = maps[si], sites[si].kind
            if kind == CHANNEL_GATE:
                panels.append(_bars(m, rows[0][1][si] if r > 0 else None))
            elif kind == SOFTMAX:
                grid, _ = _query_row(m, q)
                p = _overlay(base, grid)
                qy, qx = int(q[0] * PANEL), int(q[1] * PANEL)
                p[max(0, qy - 3):qy + 4, max(0, qx - 1):qx + 2] = 255
                p[max(0, qy - 1):qy + 2, max(0, qx - 3):qx + 4] = 255
                panels.append(p)
            else:
                panels.append(_overlay(base, m.reshape(m.shape[-2:]), 0.0, 1.0))
        for c, p in enumerate(panels):
            if p is not None:
                canvas.paste(Image.fromarray(p), (LABEL_W + c * (PANEL + 4), y0))
    buf = io.BytesIO()
    # 256 colours, no dithering: half the bytes of the RGB file (~0.3 MB per image), same picture
    canvas.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        buf, format="PNG", optimize=True)
    return buf.getvalue()


def quantized_softmax_model(src: Path, dataset: Any, out: Path, calibrate: CalibrateSpec,
                            log: Callable[[str], None]) -> Path:
    """The deliberately broken INT8 model: the cpu flavour (ONNX Runtime's quantizer, which
    quantizes Softmax) with nothing kept in float, so the Softmax output is 8-bit. The tensorrt
    flavour cannot serve: ModelOpt never quantizes the Softmax, whatever ``keep_float`` says."""
    import copy

    spec = copy.deepcopy(calibrate)
    spec.flavour, spec.keep_float, spec.exclude = "cpu", "none", []
    run_calibrate(src, dataset, out, spec, log=log, progress=False)
    return out


def class_name(classes: list[str], k: int) -> str:
    """The data set's name for class ``k``; its number where the data set names fewer classes than the
    model predicts (the vgg16-224 preset's 1000-class model on the 8-class built-in images)."""
    return classes[k] if 0 <= k < len(classes) else f"class {k}"


def explain(model_spec: ModelSpec, preprocess: PreprocessSpec, artifacts: dict[str, str | os.PathLike],
            out_dir: str | os.PathLike, data: str = "builtin:val", images: int = 4,
            log: Callable[[str], None] | None = None) -> ExplainResult:
    """Maps of ``images`` images from ``data`` for PyTorch and each artifact; JSON + PNGs in ``out_dir``.

    Everything is computed first and the files are then moved in together (no partial output).
    """
    if images < 1:
        raise InputError(f"explain needs at least one image, got {images}", "e.g. --images 4")
    for name, p in artifacts.items():
        if not Path(p).is_file():
            raise InputError(f"{name} model not found: {p}", "run the stage that writes it first")
    if preprocess.crop != model_spec.input_size:
        raise InputError(f"the preprocessing crops {preprocess.crop} px but the model takes {model_spec.input_size}",
                         "pass the model's own config (its sidecar records the preprocessing)")
    t0 = time.perf_counter()
    ds = open_dataset(data, preprocess)
    x, y = ds.arrays(limit=images)
    if len(x) == 0:
        raise InputError(f"data set {data} has no images", "pass a data set with images")
    model = build_model(model_spec)
    sites, ref_maps, results, all_maps = compare_maps(artifacts, model, x)
    cams, pred = gradcam(model, x)
    queries = _queries(ds, len(x), cams)
    shown = _display_images(x, preprocess)
    classes = getattr(ds, "classes", None) or []
    pngs: dict[str, bytes] = {}
    for i in range(len(x)):
        rows = [("PyTorch fp32", [m[i] for m in ref_maps], "reference")]
        for v, maps in all_maps.items():
            a = results[v]
            note = f"cos {a.min_cosine:.4f}" + (f", JS {a.js_mean:.4f}" if a.js_mean is not None else "")
            rows.append((v, [m[i] for m in maps], note))
        truth = class_name(classes, int(y[i])) if y is not None else "?"
        guess = class_name(classes, int(pred[i]))
        title = f"image {i}: label {truth}, PyTorch predicts {guess}"
        pngs[f"explain-{i}.png"] = render_png(shown[i], cams[i], sites, rows, queries[i], title)
    doc = {
        "format": EXPLAIN_FORMAT,
        "model": asdict(model_spec),
        "data": data,
        "images": [{"index": i, "label": (int(y[i]) if y is not None else None), "pytorch_pred": int(pred[i]),
                    "queries": [{"y": q[0], "x": q[1], "what": q[2]} for q in queries[i]], "png": f"explain-{i}.png"}
                   for i in range(len(x))],
        "classes": classes,
        "sites": [asdict(s) for s in sites],
        "gradcam": "last convolution outside attention blocks, predicted class, PyTorch fp32",
        "agreement": {v: r.to_dict() for v, r in results.items()},
        "metrics": "cosine of each image's flattened map (mean, and min over images); Jensen-Shannon divergence "
                   "base 2 of Softmax rows (mean and max over rows); reference: PyTorch fp32",
    }
    with atomic_files(out_dir) as stage:
        for name, data_png in pngs.items():
            (stage / name).write_bytes(data_png)
        (stage / "explain.json").write_text(json.dumps(doc, indent=2, default=_to_json) + "\n")
    out = Path(out_dir)
    if log:
        for v, r in results.items():
            js = f", mean JS {r.js_mean:.4f}" if r.js_mean is not None else ""
            log(f"{v}: attention-map cosine min {r.min_cosine:.4f}{js}")
    return ExplainResult(out / "explain.json", [out / n for n in pngs],
                         {v: r.to_dict() for v, r in results.items()}, time.perf_counter() - t0)


def _to_json(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj).__name__)
