"""Loaders: image folders, .npy/.npz, built-in names; every bad input is one InputError line."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from attnvgg.config import PreprocessSpec
from attnvgg.data.datasets import open_dataset
from attnvgg.data.preprocess import preprocess_array, preprocess_image
from attnvgg.errors import InputError


def one_line_error(fn, *args, **kw) -> str:
    with pytest.raises(InputError) as err:
        fn(*args, **kw)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ----------------------------------------------------------------------------- folders

def test_class_folders_sorted_and_mixed_formats(class_folder, spec):
    ds = open_dataset(str(class_folder), spec)
    assert ds.classes == ["ant", "bee", "cat"]
    assert ds.has_labels and len(ds) == 5   # notes.txt ignored, nested/ included
    xs, ys = zip(*ds.iter_batches(2))
    assert [x.shape[0] for x in xs] == [2, 2, 1]
    assert all(x.dtype == np.float32 and x.shape[1:] == (3, 32, 32) for x in xs)
    assert np.concatenate(ys).tolist() == [0, 0, 1, 2, 2]
    assert np.concatenate(ys).dtype == np.int64
    # Same tensors as preprocessing each file by hand, in the listed order.
    first = sorted((class_folder / "ant").rglob("*.*"))[0]
    with Image.open(first) as img:
        np.testing.assert_array_equal(xs[0][0], preprocess_image(img, spec))


def test_limit_and_arrays(class_folder, spec):
    ds = open_dataset(str(class_folder), spec)
    assert sum(len(x) for x, _ in ds.iter_batches(3, limit=4)) == 4
    x, y = ds.arrays(limit=3)
    assert x.shape == (3, 3, 32, 32) and y.tolist() == [0, 0, 1]


def test_flat_folder_is_unlabelled(tmp_path, spec, make_image):
    rng = np.random.default_rng(0)
    for i in range(3):
        make_image(tmp_path / f"img{i}.png", rng)
    ds = open_dataset(str(tmp_path), spec)
    assert not ds.has_labels and ds.classes is None
    (x, y), = list(ds.iter_batches(8))
    assert x.shape == (3, 3, 32, 32) and y is None


def test_corrupt_image_names_its_path_when_iterated(class_folder, spec):
    bad = class_folder / "cat" / "zz_broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    ds = open_dataset(str(class_folder), spec)          # listing is fine; decoding is lazy
    batches = ds.iter_batches(2)
    next(batches)                                         # first batch has no broken file
    msg = one_line_error(lambda: list(batches))
    assert str(bad) in msg and "replace or delete" in msg


def test_truncated_jpeg_is_an_input_error(tmp_path, spec, make_image):
    good = make_image(tmp_path / "a" / "x.jpg", np.random.default_rng(1), size=(64, 64))
    good.write_bytes(good.read_bytes()[:300])
    ds = open_dataset(str(tmp_path), spec)
    assert str(good) in one_line_error(lambda: list(ds.iter_batches(4)))


def test_empty_and_imageless_folders_refused(tmp_path, spec):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images" in one_line_error(open_dataset, str(empty), spec)
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("x")
    assert "no images" in one_line_error(open_dataset, str(tmp_path / "txt"), spec)


def test_empty_class_folder_refused(class_folder, spec):
    (class_folder / "dog").mkdir()
    assert "dog" in one_line_error(open_dataset, str(class_folder), spec)


def test_missing_path_refused(tmp_path, spec):
    msg = one_line_error(open_dataset, str(tmp_path / "nope"), spec)
    assert "not found" in msg and "nope" in msg and "builtin:val" in msg


def test_unsupported_file_refused(tmp_path, spec):
    f = tmp_path / "data.csv"
    f.write_text("1,2")
    assert "data.csv" in one_line_error(open_dataset, str(f), spec)


def test_content_hash_tracks_changes(class_folder, spec):
    h1 = open_dataset(str(class_folder), spec).content_hash()
    assert open_dataset(str(class_folder), spec).content_hash() == h1
    f = class_folder / "cat" / "c1.png"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert open_dataset(str(class_folder), spec).content_hash() != h1


def test_split_selects_subfolder(tmp_path, spec, make_image):
    rng = np.random.default_rng(2)
    make_image(tmp_path / "val" / "a" / "1.png", rng)
    make_image(tmp_path / "train" / "a" / "1.png", rng)
    make_image(tmp_path / "train" / "b" / "1.png", rng)
    assert len(open_dataset(str(tmp_path), spec, split="val")) == 1
    assert open_dataset(str(tmp_path), spec, split="train").classes == ["a", "b"]


def test_describe(class_folder, spec):
    d = open_dataset(str(class_folder), spec).describe()
    assert d["kind"] == "image_folder" and d["size"] == 5 and d["classes"] == ["ant", "bee", "cat"]
    assert len(d["content_hash"]) == 64 and len(d["preprocess_hash"]) == 64


# ------------------------------------------------------------------------------ arrays

def test_npy_float_nchw_used_as_is(tmp_path, spec):
    x = np.random.default_rng(3).standard_normal((5, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    ds = open_dataset(str(tmp_path / "x.npy"), spec)
    assert not ds.has_labels and len(ds) == 5
    got = np.concatenate([b for b, _ in ds.iter_batches(2)])
    np.testing.assert_array_equal(got, x)


def test_npy_uint8_nhwc_preprocessed(tmp_path, spec):
    x = np.random.default_rng(4).integers(0, 256, size=(3, 50, 45, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    got, _ = open_dataset(str(tmp_path / "x.npy"), spec).arrays()
    np.testing.assert_array_equal(got, preprocess_array(x, spec))


@pytest.mark.parametrize("shape,dtype,needle", [
    ((3, 32, 32), np.float32, "4-D"),
    ((2, 4, 32, 32), np.float32, "3 channels"),
    ((2, 3, 16, 16), np.float32, "16x16"),
    ((2, 8, 8, 2), np.uint8, "1, 3 or 4 channels"),
    ((2, 3, 32, 32), np.int64, "dtype"),
])
def test_npy_bad_shapes_refused(tmp_path, spec, shape, dtype, needle):
    np.save(tmp_path / "bad.npy", np.zeros(shape, dtype))
    msg = one_line_error(open_dataset, str(tmp_path / "bad.npy"), spec)
    assert needle in msg and "bad.npy" in msg


def test_npy_not_numpy_refused(tmp_path, spec):
    (tmp_path / "x.npy").write_bytes(b"hello")
    assert "x.npy" in one_line_error(open_dataset, str(tmp_path / "x.npy"), spec)


@pytest.mark.parametrize("xk,yk", [("x", "y"), ("images", "labels")])
def test_npz_keys(tmp_path, spec, xk, yk):
    x = np.random.default_rng(5).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", **{xk: x, yk: np.array([0, 1, 1, 0])}, classes=np.array(["no", "yes"]))
    ds = open_dataset(str(tmp_path / "d.npz"), spec)
    assert ds.has_labels and ds.classes == ["no", "yes"]
    got_x, got_y = ds.arrays()
    assert got_y.tolist() == [0, 1, 1, 0] and got_y.dtype == np.int64
    np.testing.assert_array_equal(got_x, preprocess_array(x, spec))
    assert ds.content_hash() == open_dataset(str(tmp_path / "d.npz"), spec).content_hash()


def test_npz_without_keys_refused(tmp_path, spec):
    np.savez(tmp_path / "d.npz", data=np.zeros((1, 3, 32, 32), np.float32))
    msg = one_line_error(open_dataset, str(tmp_path / "d.npz"), spec)
    assert "'x'" in msg and "data" in msg


@pytest.mark.parametrize("y,needle", [(np.array([0, 1]), "one per image"), (np.array([0.0, 1, 2]), "integers"),
                                      (np.array([0, -1, 2]), "out of range")])
def test_npz_bad_labels_refused(tmp_path, spec, y, needle):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 3, 32, 32), np.float32), y=y)
    assert needle in one_line_error(open_dataset, str(tmp_path / "d.npz"), spec)


# ---------------------------------------------------------------------------- built-in

def test_builtin_names():
    spec = PreprocessSpec(resize=64, crop=64)
    val = open_dataset("builtin:val", spec)
    assert len(val) == 500 and val.has_labels and len(val.classes) == 8
    assert len(open_dataset("builtin", spec, split="calib")) == 256
    assert open_dataset("builtin", spec).source == "builtin:val"
    x, y = next(open_dataset("builtin:train", spec).iter_batches(4))
    assert x.shape == (4, 3, 64, 64) and x.dtype == np.float32 and y.dtype == np.int64
    assert "unknown built-in split" in one_line_error(open_dataset, "builtin:test", spec)
    assert "conflicts" in one_line_error(open_dataset, "builtin:val", spec, split="calib")


def test_builtin_batches_match_generator_and_hash_is_stable():
    from attnvgg.data import synthetic

    spec = PreprocessSpec(resize=64, crop=64)
    ds = open_dataset("builtin:calib", spec)
    xb, yb = next(ds.iter_batches(10))
    raw, labels = synthetic.generate("calib", 0, 10)
    np.testing.assert_array_equal(xb, preprocess_array(raw, spec))
    np.testing.assert_array_equal(yb, labels)
    assert ds.content_hash() == open_dataset("builtin:calib", spec).content_hash()
    assert ds.content_hash() != open_dataset("builtin:val", spec).content_hash()


def test_bad_batch_size_and_empty_limit(class_folder, spec):
    ds = open_dataset(str(class_folder), spec)
    one_line_error(lambda: list(ds.iter_batches(0)))
    x, y = ds.arrays(limit=0)
    assert x.shape == (0, 3, 32, 32) and y.shape == (0,)
