"""Preprocessing: the PIL path and the array path give the same bits; any image gives 3xCxC."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from attnvgg.config import PreprocessSpec
from attnvgg.data.preprocess import (check_spec, preprocess_array, preprocess_image, resized_size,
                                     spec_hash)
from attnvgg.errors import InputError


@pytest.mark.parametrize("hw", [(36, 48), (48, 36), (40, 40), (17, 90), (300, 200)])
@pytest.mark.parametrize("interp", ["bilinear", "bicubic", "nearest"])
def test_array_path_equals_pil_path(hw, interp):
    spec = PreprocessSpec(resize=40, crop=32, interpolation=interp)
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    via_pil = preprocess_image(Image.fromarray(a), spec)
    via_array = preprocess_array(a, spec)
    assert via_pil.dtype == np.float32 and via_pil.shape == (3, 32, 32)
    np.testing.assert_array_equal(via_pil, via_array)


def test_no_resize_batch_equals_pil_per_image():
    """At the model's size the batch path skips PIL entirely; it must still match PIL's."""
    spec = PreprocessSpec(resize=64, crop=56)
    batch = np.random.default_rng(2).integers(0, 256, size=(5, 64, 64, 3), dtype=np.uint8)
    out = preprocess_array(batch, spec)
    assert out.shape == (5, 3, 56, 56)
    for i in range(5):
        np.testing.assert_array_equal(out[i], preprocess_image(Image.fromarray(batch[i]), spec))


@pytest.mark.parametrize("channels,mode", [(1, "L"), (4, "RGBA")])
def test_grey_and_rgba_arrays_match_pil(channels, mode, spec):
    a = np.random.default_rng(3).integers(0, 256, size=(30, 50, channels), dtype=np.uint8)
    img = Image.fromarray(a[..., 0] if channels == 1 else a, mode)
    np.testing.assert_array_equal(preprocess_image(img, spec), preprocess_array(a, spec))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK", "1", "I;16"])
@pytest.mark.parametrize("size", [(7, 9), (64, 64), (333, 120)])
def test_any_mode_and_size_gives_rgb_crop(mode, size, spec):
    a = np.random.default_rng(4).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(a).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img).astype(np.uint16) * 257)
    out = preprocess_image(img, spec)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    assert np.isfinite(out).all()


def test_sixteen_bit_grey_is_scaled_not_clipped(spec):
    """PIL's own I -> RGB clips at 255: a mid-grey 16-bit image would come out white."""
    grey16 = Image.fromarray(np.full((40, 40), 128 * 257, dtype=np.uint16))
    grey8 = Image.fromarray(np.full((40, 40), 128, dtype=np.uint8))
    np.testing.assert_array_equal(preprocess_image(grey16, spec), preprocess_image(grey8, spec))


def test_normalisation_values():
    spec = PreprocessSpec(resize=8, crop=8, mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 1.0])
    out = preprocess_array(np.full((8, 8, 3), 255, dtype=np.uint8), spec)
    np.testing.assert_allclose(out[:, 0, 0], [1.0, 3.0, 1.0], rtol=1e-6)


def test_centre_crop_position():
    """A 1-pixel marker at the centre of a 10x10 image stays at the crop's centre (torchvision rounding)."""
    a = np.zeros((10, 10, 3), dtype=np.uint8)
    a[5, 5] = 255
    spec = PreprocessSpec(resize=10, crop=4, mean=[0, 0, 0], std=[1, 1, 1])
    out = preprocess_array(a, spec)
    assert out[0, 2, 2] == 1.0 and out[0].sum() == 1.0


def test_resized_size_like_torchvision():
    assert resized_size(100, 50, 32) == (64, 32)
    assert resized_size(50, 100, 32) == (32, 64)
    assert resized_size(333, 500, 256) == (256, 384)   # int(256 * 500 / 333) = 384


def test_same_spec_same_tensor_and_hash(spec):
    a = np.random.default_rng(5).integers(0, 256, size=(50, 60, 3), dtype=np.uint8)
    assert preprocess_array(a, spec).tobytes() == preprocess_array(a, PreprocessSpec(resize=40, crop=32)).tobytes()
    assert spec_hash(spec) == spec_hash(PreprocessSpec(resize=40, crop=32))
    assert spec_hash(spec) != spec_hash(PreprocessSpec(resize=40, crop=30))
    assert spec_hash(spec) != spec_hash(PreprocessSpec(resize=40, crop=32, interpolation="bicubic"))


@pytest.mark.parametrize("kw", [dict(resize=32, crop=40), dict(crop=0), dict(std=[1.0, 0.0, 1.0]),
                                dict(mean=[0.5]), dict(interpolation="cubic")])
def test_bad_spec_refused(kw):
    with pytest.raises(InputError) as err:
        check_spec(PreprocessSpec(**kw))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("a", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8),
                               np.zeros((2, 4, 4, 2), np.uint8)])
def test_bad_arrays_refused(a, spec):
    with pytest.raises(InputError):
        preprocess_array(a, spec)


def test_palette_with_transparency(spec):
    img = Image.fromarray(np.random.default_rng(6).integers(0, 256, (20, 30, 3), dtype=np.uint8)).convert("P")
    img.info["transparency"] = bytes([0] * 8 + [255] * 248)   # per-entry alpha, as PNG tRNS
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")     # PIL warns when P+transparency goes straight to RGB
        out = preprocess_image(img, spec)
    np.testing.assert_array_equal(out, preprocess_image(img.convert("RGBA").convert("RGB"), spec))


def test_package_exports():
    import attnvgg.data as data
    import attnvgg.data.train as train_module

    assert callable(train_module.train)
    assert callable(data.open_dataset) and callable(data.builtin_model_config)
