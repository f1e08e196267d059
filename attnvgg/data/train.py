"""Train the small VGG16WithAttention on the built-in data set: the pipeline's own test model.

A trained model (unlike random weights) has confident, meaningful logits, so INT8 and FP16
accuracy losses measured on it mean something. It must train in about a minute on two CPU
cores and be reproducible bit for bit from its seed, so: fixed thread count, seeded torch
and numpy RNGs, a fixed data order, no data-dependent nondeterminism. The VGG has no
BatchNorm, so every conv and linear layer starts with Kaiming (fan-in) normal weights, which
keep the activation scale through 16 plain layers; PyTorch's default init divides the
activation std by ~2.4 per layer, so the logits start nearly constant whatever the input.

Output: ``<name>.pt`` (a plain state_dict, loadable with ``weights_only=True``) and beside it
``<name>.toml`` with [model], [preprocess], [train] and [result]; written together atomically.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

from attnvgg.config import ATTENTION_KINDS, ModelSpec, PreprocessSpec, TrainSpec
from attnvgg.errors import InputError
from attnvgg.artifacts import atomic_files, sha256_file
from attnvgg.config import from_dict, read_toml, to_dict
from attnvgg.data import synthetic
from attnvgg.data.preprocess import preprocess_array, spec_hash
from attnvgg.models.build import set_gamma


def check_train_spec(spec: TrainSpec) -> None:
    """Refuse bad values with one line each, before any minute of training is spent."""

    checks = [
        (spec.epochs >= 1, f"epochs must be >= 1, got {spec.epochs}", "e.g. --epochs 5"),
        (spec.batch_size >= 1, f"batch size must be >= 1, got {spec.batch_size}", "e.g. --batch-size 64"),
        (spec.lr > 0 and math.isfinite(spec.lr), f"learning rate must be positive, got {spec.lr}", "e.g. --lr 0.002"),
        (spec.weight_decay >= 0, f"weight decay must be >= 0, got {spec.weight_decay}", "e.g. 0"),
        (spec.width > 0, f"width must be positive, got {spec.width}", "e.g. --width 0.125"),
        (spec.input_size >= 32, f"input size must be >= 32 (five 2x2 poolings), got {spec.input_size}",
         "e.g. --input-size 64"),
        (len(spec.attention) == 3 and all(k in ATTENTION_KINDS for k in spec.attention),
         f"attention must be three of {', '.join(ATTENTION_KINDS)}, got {spec.attention}",
         "e.g. --attention global,global,global"),
        (spec.train_limit >= 0 and spec.val_limit >= 0,
         f"train/val limits must be >= 0, got {spec.train_limit}/{spec.val_limit}", "0 means the whole split"),
        (spec.threads >= 0, f"threads must be >= 0, got {spec.threads}", "0 keeps torch's default"),
    ]
    for ok, msg, hint in checks:
        if not ok:
            raise InputError(msg, hint)
    if spec.train_limit > synthetic.split_size("train"):
        raise InputError(f"train limit {spec.train_limit} exceeds the built-in train split "
                         f"({synthetic.split_size('train')} images)", "lower --train-limit or use 0")


def output_paths(out: str | Path) -> tuple[Path, Path]:
    """``x.pt`` -> (x.pt, x.toml); a folder -> (folder/model.pt, folder/model.toml)."""
    out = Path(out)
    if out.suffix == ".pt":
        return out, out.with_suffix(".toml")
    if out.suffix:
        raise InputError(f"--out {out} is neither a .pt file nor a folder",
                         "pass e.g. --out runs/model.pt or --out runs/")
    return out / "model.pt", out / "model.toml"


def preprocess_for(spec: TrainSpec) -> PreprocessSpec:
    """The preprocessing the trained model expects: the 64x64 images at input size, ImageNet stats."""
    return PreprocessSpec(resize=spec.input_size, crop=spec.input_size)


def _init_weights(model: Any) -> None:
    from torch import nn

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def evaluate_top1(model: Any, x_uint8: Any, y: Any, pre: PreprocessSpec, batch: int = 250) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on uint8 NHWC images."""
    import numpy as np
    import torch

    model.eval()
    correct = 0
    with torch.inference_mode():
        for s in range(0, len(y), batch):
            logits = model(torch.from_numpy(preprocess_array(x_uint8[s:s + batch], pre)))
            correct += int((logits.argmax(1).numpy() == np.asarray(y[s:s + batch])).sum())
    return correct / max(1, len(y))


def train(spec: TrainSpec, out: str | Path, log: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """Train on builtin:train, evaluate on builtin:val, write checkpoint + TOML atomically.

    Returns the facts also written to the TOML's [result] table plus the two paths.
    """
    check_train_spec(spec)
    ckpt_path, toml_path = output_paths(out)
    log = log or (lambda _msg: None)

    import numpy as np
    import torch
    import torch.nn.functional as F

    from attnvgg.models.vgg import VGG16WithAttention   # imports torch

    t_start = time.perf_counter()
    if spec.threads:
        torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    pre = preprocess_for(spec)
    classes = synthetic.class_names()

    n_train = spec.train_limit or synthetic.split_size("train")
    n_val = min(spec.val_limit or synthetic.split_size("val"), synthetic.split_size("val"))
    x_train, y_train = synthetic.generate("train", 0, n_train)
    x_val, y_val = synthetic.generate("val", 0, n_val)
    t_data = time.perf_counter() - t_start

    model = VGG16WithAttention(len(classes), spec.attention, spec.width)
    _init_weights(model)
    set_gamma(model, spec.gamma_init)
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    steps_per_epoch = math.ceil(n_train / spec.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=spec.lr, total_steps=spec.epochs * steps_per_epoch, pct_start=0.15,
        anneal_strategy="cos", div_factor=10.0, final_div_factor=100.0)
    order_rng = np.random.default_rng([spec.seed, 1])

    history = []
    for epoch in range(spec.epochs):
        model.train()
        perm = order_rng.permutation(n_train)
        total, seen, correct = 0.0, 0, 0
        for s in range(0, n_train, spec.batch_size):
            idx = np.sort(perm[s:s + spec.batch_size])
            xb = torch.from_numpy(preprocess_array(x_train[idx], pre))
            yb = torch.from_numpy(y_train[idx])
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        history.append({"epoch": epoch + 1, "loss": round(total / seen, 5), "train_top1": round(correct / seen, 5)})
        log(f"epoch {epoch + 1}/{spec.epochs}: loss {total / seen:.4f}, train top-1 {correct / seen:.3f} "
            f"({time.perf_counter() - t_start:.0f} s)")
    val_top1 = round(evaluate_top1(model, x_val, y_val, pre), 5)
    train_seconds = time.perf_counter() - t_start

    gammas = [float(m.gamma.detach()) for m in model.modules() if hasattr(m, "gamma")]
    # How much the trained model leans on global attention: accuracy with every gamma at 0.
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    n_global = set_gamma(model, 0.0)
    val_no_attn = evaluate_top1(model, x_val, y_val, pre) if n_global else val_top1
    model.load_state_dict(state)

    model_spec = ModelSpec(arch="vgg16_attention", attention=list(spec.attention), width=spec.width,
                           num_classes=len(classes), input_size=spec.input_size, checkpoint=ckpt_path.name,
                           seed=spec.seed)
    result = {
        "val_top1": val_top1,
        "val_top1_gamma0": round(val_no_attn, 5),
        "val_images": int(n_val),
        "train_images": int(n_train),
        "train_seconds": round(train_seconds, 1),
        "data_seconds": round(t_data, 2),
        "gammas": [round(g, 5) for g in gammas],
        "classes": classes,
        "data": f"builtin:train (generator v{synthetic.GENERATOR_VERSION})",
        "preprocess_hash": spec_hash(pre),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "history": history,
    }
    with atomic_files(ckpt_path.parent) as stage:
        torch.save(state, stage / ckpt_path.name)
        result["checkpoint_sha256"] = sha256_file(stage / ckpt_path.name)
        doc = {"model": to_dict(model_spec), "preprocess": to_dict(pre), "train": to_dict(spec),
               "result": result}
        text = (f"# written by attnvgg train; regenerate: attnvgg train --out {ckpt_path.name} --config THIS_FILE\n"
                + _dumps(doc))
        (stage / toml_path.name).write_text(text)
        # The TOML is moved in last (oldest first): a TOML on disk always names a complete .pt.
        os.utime(stage / toml_path.name, None)
    return {**result, "checkpoint": str(ckpt_path), "config": str(toml_path)}


def _dumps(doc: dict) -> str:
    import tomli_w

    return tomli_w.dumps(doc)


def load_model_toml(path: str | Path) -> tuple[ModelSpec, PreprocessSpec, dict[str, Any]]:
    """Read a TOML written by ``train``: (ModelSpec with an absolute checkpoint, PreprocessSpec, extras).

    The checkpoint path in the file is relative to the TOML's folder, so the pair can move.
    """

    p = Path(path)
    data = read_toml(p)
    if "model" not in data:
        raise InputError(f"model config {p} has no [model] table", "regenerate it with attnvgg train")
    model = from_dict(ModelSpec, data["model"], "model")
    pre = from_dict(PreprocessSpec, data.get("preprocess", {}), "preprocess")
    if model.checkpoint and not Path(model.checkpoint).is_absolute():
        model.checkpoint = str((p.parent / model.checkpoint).resolve())
    extras = {k: v for k, v in data.items() if k not in ("model", "preprocess")}
    return model, pre, extras


def builtin_model_config() -> tuple[ModelSpec, PreprocessSpec]:
    """The shipped model trained on the built-in data set, checkpoint path inside the package."""
    from importlib import resources

    toml = Path(str(resources.files("attnvgg") / "assets" / "builtin.toml"))
    if not toml.is_file():
        raise InputError(f"the built-in model is missing from the installed package ({toml})",
                         "reinstall attnvgg, or regenerate it with: attnvgg train --out attnvgg/assets/builtin.pt")
    model, pre, _ = load_model_toml(toml)
    return model, pre


def load_train_spec(path: str | Path | None) -> TrainSpec:
    """The [train] table of a pipeline config or of a model TOML written by ``train``.

    Other tables are not checked here: a model TOML's [result] is not part of ``Config``.
    """

    if path is None:
        return TrainSpec()
    data = read_toml(path)
    return from_dict(TrainSpec, data.get("train", {}), "train")
