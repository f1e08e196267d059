"""One data set abstraction for every stage: image folders, .npy/.npz arrays, the built-in set.

Stages never care where the images come from: they call ``open_dataset(path, spec)`` and
iterate ``iter_batches``, which yields float32 NCHW batches preprocessed with the model's
spec and int64 labels (or None). Batches are decoded lazily, so a folder of a million
images costs one batch of memory. ``content_hash`` lets ``attnvgg run`` skip a stage whose
data did not change; it hashes names, sizes and mtimes for folders (cheap, and any edit
changes an mtime) and bytes for array files and generated data.
"""

from __future__ import annotations

import abc
import hashlib
import os
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from attnvgg.config import PreprocessSpec
from attnvgg.data.preprocess import check_spec, preprocess_array, preprocess_image, spec_hash
from attnvgg.errors import InputError, first_line, require
from attnvgg.artifacts import sha256_file
from attnvgg.data import synthetic

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
BUILTIN = "builtin"
Batch = tuple[np.ndarray, Optional[np.ndarray]]


class Dataset(abc.ABC):
    """A finite, ordered set of images (and maybe labels), preprocessed on the fly."""

    kind: str = "dataset"
    classes: Optional[list[str]] = None

    def __init__(self, spec: PreprocessSpec, source: str):
        check_spec(spec)
        self.spec = spec
        self.source = source

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @property
    @abc.abstractmethod
    def has_labels(self) -> bool: ...

    @abc.abstractmethod
    def _batches(self, batch_size: int, n: int) -> Iterator[Batch]:
        """Yield the first ``n`` samples in batches of ``batch_size`` (last may be smaller)."""

    @abc.abstractmethod
    def content_hash(self) -> str:
        """Hash of the data (not the preprocessing: combine with ``spec_hash`` for that)."""

    def iter_batches(self, batch_size: int, limit: Optional[int] = None) -> Iterator[Batch]:
        """(x float32 (B, 3, crop, crop), y int64 (B,) or None) in a fixed order."""
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}", "pass a positive batch size")
        if limit is not None and limit < 0:
            raise InputError(f"limit must be >= 0, got {limit}", "pass a non-negative limit or None")
        n = len(self) if limit is None else min(limit, len(self))
        return self._batches(batch_size, n)

    def arrays(self, limit: Optional[int] = None, batch_size: int = 64) -> Batch:
        """Everything (up to ``limit``) as one array pair; for small sets such as calibration."""
        xs, ys = [], []
        for x, y in self.iter_batches(batch_size, limit):
            xs.append(x)
            if y is not None:
                ys.append(y)
        c = self.spec.crop
        x_all = np.concatenate(xs) if xs else np.zeros((0, 3, c, c), np.float32)
        if not self.has_labels:
            return x_all, None
        return x_all, np.concatenate(ys) if ys else np.zeros((0,), np.int64)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "size": len(self),
            "has_labels": self.has_labels,
            "classes": self.classes,
            "content_hash": self.content_hash(),
            "preprocess_hash": spec_hash(self.spec),
        }


# ------------------------------------------------------------------------------ folders

def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _images_under(folder: Path) -> list[Path]:
    """Image files below ``folder`` (recursive, as torchvision's ImageFolder), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if _is_image(Path(f))]
    return sorted(found)


def load_image(path: Path, spec: PreprocessSpec) -> np.ndarray:
    """Decode and preprocess one file; any decoder failure becomes an InputError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return preprocess_image(img, spec)
    except InputError:
        raise
    except Exception as exc:   # PIL raises OSError, SyntaxError, ValueError, struct.error...
        first = first_line(exc, 120)
        raise InputError(f"cannot read image {path} ({type(exc).__name__}: {first})",
                         "replace or delete the file") from exc


class ImageFolderDataset(Dataset):
    """torchvision ImageFolder layout (root/<class>/<image>), or a flat folder (no labels)."""

    kind = "image_folder"

    def __init__(self, root: Path, spec: PreprocessSpec):
        super().__init__(spec, str(root))
        self.root = root
        subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        loose = sorted(p for p in root.iterdir() if p.is_file() and _is_image(p))
        per_class = {d.name: _images_under(d) for d in subdirs}
        if any(per_class.values()):
            empty = [name for name, files in per_class.items() if not files]
            if empty:
                raise InputError(f"class folder(s) {', '.join(empty)} in {root} hold no images "
                                 f"({'/'.join(IMAGE_EXTENSIONS)})", "add images or remove the folder(s)")
            self.classes = list(per_class)
            self.files = [f for name in self.classes for f in per_class[name]]
            self.targets = np.asarray([i for i, name in enumerate(self.classes) for _ in per_class[name]],
                                      dtype=np.int64)
            self.ignored = len(loose)      # loose files beside class folders, as ImageFolder ignores them
        elif loose:
            self.classes = None
            self.files = loose
            self.targets = None
            self.ignored = 0
        else:
            raise InputError(f"no images ({'/'.join(IMAGE_EXTENSIONS)}) found in {root}",
                             "put images in it, or one sub-folder of images per class")

    def __len__(self) -> int:
        return len(self.files)

    @property
    def has_labels(self) -> bool:
        return self.targets is not None

    def _batches(self, batch_size: int, n: int) -> Iterator[Batch]:
        for s in range(0, n, batch_size):
            files = self.files[s:min(s + batch_size, n)]
            x = np.stack([load_image(f, self.spec) for f in files])
            yield x, (self.targets[s:s + len(files)] if self.targets is not None else None)

    def content_hash(self) -> str:
        h = hashlib.sha256(b"image_folder-v1\n")
        for f in self.files:
            st = f.stat()
            h.update(f"{f.relative_to(self.root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "ignored_loose_files": self.ignored}


# ------------------------------------------------------------------------------- arrays

class ArrayDataset(Dataset):
    """Images held in an array: uint8 NHWC (preprocessed here) or float32 NCHW (used as is)."""

    kind = "array"

    def __init__(self, x: np.ndarray, y: Optional[np.ndarray], spec: PreprocessSpec, source: str,
                 classes: Optional[list[str]] = None, file_hash: Optional[str] = None):
        super().__init__(spec, source)
        self.x = _check_images(x, spec, source)
        self.y = _check_labels(y, len(self.x), source, classes)
        self.classes = classes
        self._hash = file_hash

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def preprocessed(self) -> bool:
        return self.x.dtype != np.uint8

    @property
    def has_labels(self) -> bool:
        return self.y is not None

    def _batches(self, batch_size: int, n: int) -> Iterator[Batch]:
        for s in range(0, n, batch_size):
            chunk = np.asarray(self.x[s:min(s + batch_size, n)])    # reads only this slice of a memmap
            x = chunk.astype(np.float32, copy=True) if self.preprocessed else preprocess_array(chunk, self.spec)
            yield x, (self.y[s:s + len(x)].copy() if self.y is not None else None)

    def content_hash(self) -> str:
        if self._hash is None:
            h = hashlib.sha256(f"array-v1 {self.x.dtype} {self.x.shape}\n".encode())
            for s in range(0, len(self), 256):
                h.update(np.ascontiguousarray(self.x[s:s + 256]).tobytes())
            if self.y is not None:
                h.update(np.ascontiguousarray(self.y).tobytes())
            self._hash = h.hexdigest()
        return self._hash

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "dtype": str(self.x.dtype), "shape": list(self.x.shape),
                "preprocessed": self.preprocessed}


def _check_images(x: np.ndarray, spec: PreprocessSpec, source: str) -> np.ndarray:
    fix = "save float32 (N, 3, H, W) already preprocessed, or uint8 (N, H, W, 1|3|4) images"
    if x.ndim != 4:
        raise InputError(f"{source}: images must be 4-D, got shape {x.shape}", fix)
    if x.dtype == np.uint8:
        if x.shape[-1] not in (1, 3, 4):
            raise InputError(f"{source}: uint8 images must be NHWC with 1, 3 or 4 channels, got shape {x.shape}",
                             fix)
        return x
    if x.dtype.kind != "f":
        raise InputError(f"{source}: images have dtype {x.dtype}", fix)
    if x.shape[1] != 3:
        raise InputError(f"{source}: float images must be NCHW with 3 channels, got shape {x.shape}", fix)
    if x.shape[2:] != (spec.crop, spec.crop):
        raise InputError(f"{source}: float images are {x.shape[2]}x{x.shape[3]} but the model's preprocessing "
                         f"gives {spec.crop}x{spec.crop}",
                         f"preprocess them to {spec.crop}x{spec.crop}, or save raw uint8 NHWC images instead")
    return x


def _check_labels(y: Optional[np.ndarray], n: int, source: str, classes: Optional[list[str]]) -> Optional[np.ndarray]:
    if y is None:
        return None
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise InputError(f"{source}: labels must be 1-D with one per image ({n}), got shape {y.shape}",
                         "save labels as an int array of shape (N,)")
    if y.dtype.kind not in "iu":
        raise InputError(f"{source}: labels must be integers, got {y.dtype}", "save class indices as int64")
    if n and (y.min() < 0 or (classes is not None and y.max() >= len(classes))):
        raise InputError(f"{source}: labels out of range ({y.min()}..{y.max()})",
                         "labels are class indices 0..num_classes-1")
    return y.astype(np.int64)


def _load_npy(path: Path, spec: PreprocessSpec) -> ArrayDataset:
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise InputError(f"cannot read {path} as .npy ({exc})", "save it with numpy.save") from exc
    return ArrayDataset(x, None, spec, str(path), file_hash=sha256_file(path))


IMAGE_KEYS = ("x", "images")
LABEL_KEYS = ("y", "labels")
MODEL_INPUT = "input"          # the input name attnvgg's exports use


def _images_key(keys: list[str], path: Path, input_name: Optional[str]) -> str:
    """Which array holds the images: x / images (ours) or the model's input name (ModelOpt's and
    Polygraphy's ``{input: x}``). Any other name is refused, not guessed."""
    names = [*IMAGE_KEYS, *([input_name] if input_name else []), MODEL_INPUT]
    found = next((k for k in names if k in keys), None)
    if found is not None:
        return found
    raise InputError(f"{path} has no image array: no 'x', 'images' or model input name "
                     f"'{input_name or MODEL_INPUT}' (keys: {', '.join(sorted(keys)) or 'none'})",
                     "save with numpy.savez(path, x=images, y=labels) or numpy.savez(path, input=images)")


def _load_npz(path: Path, spec: PreprocessSpec, input_name: Optional[str] = None) -> ArrayDataset:
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"cannot read {path} as .npz ({exc})", "save it with numpy.savez") from exc
    with z:
        keys = list(z.files)
        xk = _images_key([k for k in keys if k not in (*LABEL_KEYS, "classes")], path, input_name)
        yk = next((k for k in LABEL_KEYS if k in keys), None)
        try:
            x = z[xk]
            y = z[yk] if yk else None
            classes = [str(c) for c in z["classes"]] if "classes" in keys else None
        except Exception as exc:
            raise InputError(f"cannot read arrays from {path} ({exc})", "save plain numeric arrays") from exc
    return ArrayDataset(x, y, spec, str(path), classes=classes, file_hash=sha256_file(path))


def _load_polygraphy_json(path: Path, spec: PreprocessSpec, input_name: Optional[str] = None) -> ArrayDataset:
    """Polygraphy's input data JSON (``polygraphy run --save-inputs``, ``validate --save-inputs``):
    a list of ``{input name: array}`` feed dicts, one per iteration, read with
    ``polygraphy.json.load_json`` (arrays as ``np.load(allow_pickle=False)``, never pickles).
    The iterations are concatenated along the batch axis; they carry no labels."""
    require("polygraphy", 'pip install -c constraints.txt -e ".[cpu]"')
    from polygraphy.exception import PolygraphyException
    from polygraphy.json import load_json
    from polygraphy.logger import G_LOGGER

    fix = "pass the file polygraphy run --save-inputs (or attnvgg validate --save-inputs) wrote"
    try:
        with G_LOGGER.verbosity():          # its log lines are not ours; a failure becomes one InputError
            data = load_json(str(path), description="input data")
    except (PolygraphyException, ValueError, OSError, UnicodeDecodeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:160]
        raise InputError(f"cannot read {path} as Polygraphy input data ({first})", fix) from exc
    feeds = [data] if isinstance(data, dict) else data
    if not isinstance(feeds, list) or not feeds or not all(isinstance(f, dict) and f for f in feeds):
        raise InputError(f"{path} is not Polygraphy input data (a JSON list of {{input name: array}})", fix)
    arrays = []
    for i, feed in enumerate(feeds):
        keys = list(feed)
        key = keys[0] if len(keys) == 1 else next((k for k in (input_name, MODEL_INPUT) if k and k in feed), None)
        if key is None:
            raise InputError(f"{path}: iteration {i} feeds several inputs ({', '.join(keys)}) and none is "
                             f"'{input_name or MODEL_INPUT}'", "save one input per feed dict")
        a = feed[key]
        if not isinstance(a, np.ndarray):
            raise InputError(f"{path}: iteration {i} input {key!r} is not an array", fix)
        arrays.append(a)
    if len({a.shape[1:] for a in arrays}) > 1 or len({a.dtype for a in arrays}) > 1:
        raise InputError(f"{path}: iterations differ in shape or dtype beyond the batch axis", "save one shape per file")
    x = np.concatenate(arrays) if arrays[0].ndim == 4 else np.stack(arrays)
    return ArrayDataset(x, None, spec, str(path), file_hash=sha256_file(path))


# ------------------------------------------------------------------------------ built-in

class SyntheticDataset(Dataset):
    """A split of the built-in generated set; images are rendered batch by batch."""

    kind = "builtin"

    def __init__(self, split: str, spec: PreprocessSpec):
        super().__init__(spec, f"{BUILTIN}:{split}")
        self.split = split
        self.classes = synthetic.class_names()
        self._hash: Optional[str] = None

    def __len__(self) -> int:
        return synthetic.split_size(self.split)

    @property
    def has_labels(self) -> bool:
        return True

    def _batches(self, batch_size: int, n: int) -> Iterator[Batch]:
        for x, y in synthetic.iter_chunks(self.split, batch_size, n):
            yield preprocess_array(x, self.spec), y

    def content_hash(self) -> str:
        """Hash of the generated bytes: sound even if a numpy upgrade changed the RNG streams."""
        if self._hash is None:
            h = hashlib.sha256(f"builtin-v{synthetic.GENERATOR_VERSION} {self.split}\n".encode())
            for x, y in synthetic.iter_chunks(self.split, 500):
                h.update(x.tobytes())
                h.update(y.tobytes())
            self._hash = h.hexdigest()
        return self._hash


# ---------------------------------------------------------------------------------- open

def open_dataset(path_or_name: str, spec: PreprocessSpec, split: Optional[str] = None,
                 input_name: Optional[str] = None) -> Dataset:
    """Open an image folder, a .npy/.npz file, Polygraphy input JSON, or ``builtin[:split]``.

    ``input_name``: the model's input, an accepted key of .npz files and Polygraphy feed dicts
    (``input``, attnvgg's own, is always accepted).

    ``split`` picks the built-in split (default ``val``), or the sub-folder of that name of an
    image folder when it has one (``data/val/<class>/...``); array files ignore it.
    """

    name = str(path_or_name)
    if name == BUILTIN or name.startswith(BUILTIN + ":"):
        named = name.split(":", 1)[1] if ":" in name else None
        if named and split and named != split:
            raise InputError(f"data set {name} conflicts with split {split!r}", f"pass {BUILTIN}:{split} or drop the split")
        chosen = named or split or "val"
        if chosen not in synthetic.SPLITS:
            raise InputError(f"unknown built-in split {chosen!r}",
                             f"use one of {', '.join(f'{BUILTIN}:{s}' for s in synthetic.SPLITS)}")
        return SyntheticDataset(chosen, spec)

    path = Path(name).expanduser()
    fix = f"pass an image folder, a .npy/.npz file, Polygraphy input .json, or {BUILTIN}:val|calib|train"
    if not path.exists():
        raise InputError(f"data set not found: {path}", fix)
    if path.is_dir():
        if split and (path / split).is_dir():
            path = path / split
        return ImageFolderDataset(path, spec)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_npy(path, spec)
    if suffix == ".npz":
        return _load_npz(path, spec, input_name)
    if suffix == ".json":
        return _load_polygraphy_json(path, spec, input_name)
    raise InputError(f"data set {path} is not a folder, .npy, .npz or Polygraphy .json file", fix)
