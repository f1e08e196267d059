"""Image -> NCHW float32 tensor, identical in every stage that uses a model.

The spec (``PreprocessSpec``) is stored with the model's config, and every stage (export
checks, calibration, evaluation, benchmarks) calls these functions with it, so an INT8 model
is calibrated on exactly the tensors it is evaluated on. The recipe follows torchvision's
``Resize(int) -> CenterCrop -> ToTensor -> Normalize`` (shorter side to ``resize`` with the
long side truncated, crop offsets rounded), because that is what most checkpoints were
trained with. EXIF orientation is not applied, as torchvision's loader does not apply it.

Arrays (generated data, .npy files) go through the same code: the pixels are resized by PIL
when a resize is needed, so ``preprocess_array(np.asarray(img))`` equals
``preprocess_image(img)`` bit for bit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from attnvgg import sidecar
from attnvgg.artifacts import sha256_json
from attnvgg.config import PreprocessSpec
from attnvgg.errors import InputError

# Bump when the recipe changes, so hashes of preprocessed data change with it.
PREPROCESS_VERSION = 1
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


def check_spec(spec: PreprocessSpec) -> None:
    """Refuse a spec that would silently produce something else than asked."""
    if spec.resize <= 0 or spec.crop <= 0:
        raise InputError(f"preprocess resize={spec.resize} and crop={spec.crop} must be positive",
                         "e.g. resize = 256, crop = 224")
    if spec.crop > spec.resize:
        raise InputError(f"preprocess crop={spec.crop} is larger than resize={spec.resize}",
                         "set crop <= resize (the shorter side is resized to `resize`, then cropped)")
    if len(spec.mean) != 3 or len(spec.std) != 3:
        raise InputError(f"preprocess mean and std need 3 values (RGB), got {spec.mean} and {spec.std}",
                         "e.g. mean = [0.485, 0.456, 0.406]")
    if any(s <= 0 for s in spec.std):
        raise InputError(f"preprocess std must be positive, got {spec.std}", "e.g. std = [0.229, 0.224, 0.225]")
    if spec.interpolation not in INTERPOLATIONS:
        raise InputError(f"preprocess interpolation {spec.interpolation!r} is unknown",
                         f"use one of {', '.join(INTERPOLATIONS)}")


def spec_hash(spec: PreprocessSpec) -> str:
    """Hash of everything that decides the tensors: the spec's fields and the recipe version."""
    return sha256_json({"preprocess_version": PREPROCESS_VERSION, **dataclasses.asdict(spec)})


def fit_to_input(spec: PreprocessSpec, hw: int) -> PreprocessSpec:
    """The spec for a model that takes ``hw`` x ``hw`` inputs: the crop is the input size and the
    resize keeps the spec's resize/crop ratio (256/224 -> 73/64). Export records this."""
    if spec.crop == hw:
        return dataclasses.replace(spec)
    return dataclasses.replace(spec, resize=max(hw, round(hw * spec.resize / spec.crop)), crop=hw)


def for_model(artifact: Any, configured: PreprocessSpec, hw: int, given: bool) -> PreprocessSpec:
    """The one preprocessing decision of every stage that feeds a model file (``run`` and the stage
    commands alike): the spec stored with the model (its sidecar lineage) when there is one, else
    the configured one when the user gave it (``given``: a ``[preprocess]`` table in --config or a
    --set), with the crop the model needs. A model file with neither is refused: ImageNet defaults
    silently applied to a model trained otherwise cost a point of accuracy."""
    stored = sidecar.preprocess(artifact) if artifact is not None else None
    if stored is not None:
        if given and configured != stored:
            raise InputError(f"the config's [preprocess] differs from the one stored with {artifact} (in its .json "
                             "sidecar)", "drop [preprocess] from the config, or re-export the model with it")
        if stored.crop != hw:
            raise InputError(f"the preprocessing stored with {artifact} crops {stored.crop} px but the model takes {hw}",
                             "re-export the model so its sidecar matches its input")
        return stored
    if artifact is not None and not given:
        raise InputError(f"{artifact} has no sidecar saying how its inputs are preprocessed",
                         "pass --config FILE.toml with a [preprocess] table (and [model] for a PyTorch reference), "
                         "e.g. the model TOML written by attnvgg train")
    if configured.crop != hw and configured.crop != PreprocessSpec().crop:
        raise InputError(f"[preprocess] crop is {configured.crop} but the model takes {hw}x{hw} inputs",
                         f"set crop = {hw} in the config or use the model exported for {configured.crop} px")
    return fit_to_input(configured, hw)


def resized_size(width: int, height: int, resize: int) -> tuple[int, int]:
    """(w, h) after scaling the shorter side to ``resize``, as torchvision's Resize(int)."""
    if width <= height:
        return resize, int(resize * height / width)
    return int(resize * width / height), resize


def to_rgb(img: Any) -> Any:
    """Any PIL mode -> RGB. Alpha is dropped (not composited), as PIL's convert does.

    16-bit and float greyscale are scaled to 8 bits first: PIL's own I -> RGB conversion
    clips at 255, which would turn most of a 16-bit image white.
    """
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(img).astype(np.float64)
        if img.mode != "F" and a.max(initial=0) > 255:
            a = a / 257.0
        elif img.mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0
        img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def _resample(name: str) -> int:
    from PIL import Image

    return {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
        "box": Image.Resampling.BOX,
        "hamming": Image.Resampling.HAMMING,
    }[name]


def _resize_rgb(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 HWC RGB -> resized uint8 HWC RGB (through PIL; no copy when already at size)."""
    h, w = rgb.shape[:2]
    size = resized_size(w, h, spec.resize)
    if size == (w, h):
        return rgb   # PIL's resize to the same size is a copy: skipping it changes nothing
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    return np.asarray(img.resize(size, _resample(spec.interpolation)))


def _crop_normalize(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Resized uint8 (N)HWC -> centre crop -> (x/255 - mean)/std as float32 (N)CHW.

    Element-wise float32 only, so a batch gives the same bits as its images one by one.
    """
    h, w = rgb.shape[-3:-1]
    c = spec.crop
    top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
    x = rgb[..., top:top + c, left:left + c, :].astype(np.float32) / np.float32(255.0)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    x = (x - mean) / std
    axes = (2, 0, 1) if x.ndim == 3 else (0, 3, 1, 2)
    return np.ascontiguousarray(x.transpose(axes), dtype=np.float32)


def preprocess_image(img: Any, spec: PreprocessSpec) -> np.ndarray:
    """A PIL image of any mode and size -> float32 (3, crop, crop)."""
    check_spec(spec)
    rgb = to_rgb(img)
    h = rgb.height
    w = rgb.width
    size = resized_size(w, h, spec.resize)
    if size != (w, h):
        rgb = rgb.resize(size, _resample(spec.interpolation))
    return _crop_normalize(np.asarray(rgb), spec)


def _array_to_rgb(a: np.ndarray) -> np.ndarray:
    c = a.shape[-1]
    if c == 3:
        return a
    if c == 1:
        return np.repeat(a, 3, axis=-1)
    return a[..., :3]   # RGBA: alpha dropped, as PIL's RGBA -> RGB


def preprocess_array(images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 HWC -> (3, crop, crop), or uint8 NHWC -> (N, 3, crop, crop), float32.

    Channels may be 1 (grey), 3 (RGB) or 4 (RGBA). The result equals ``preprocess_image`` on
    the same pixels.
    """
    check_spec(spec)
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise InputError(f"preprocess_array needs uint8 pixels, got {a.dtype}",
                         "pass 0-255 uint8 HWC/NHWC images, or already preprocessed float32 NCHW")
    if a.ndim not in (3, 4) or a.shape[-1] not in (1, 3, 4):
        raise InputError(f"preprocess_array needs HWC or NHWC with 1, 3 or 4 channels, got shape {a.shape}",
                         "pass uint8 images shaped (H, W, C) or (N, H, W, C)")
    single = a.ndim == 3
    if single:
        a = a[None]
    rgb = _array_to_rgb(a)
    h, w = rgb.shape[1:3]
    if resized_size(w, h, spec.resize) == (w, h):
        out = _crop_normalize(rgb, spec)          # no resize: the whole batch at once
    else:
        out = np.empty((rgb.shape[0], 3, spec.crop, spec.crop), dtype=np.float32)
        for i in range(rgb.shape[0]):
            out[i] = _crop_normalize(_resize_rgb(rgb[i], spec), spec)
    return out[0] if single else out
