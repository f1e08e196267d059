"""Calibration cache: a hit skips the calibration pass; any change of model, data or method misses."""

from __future__ import annotations

import json
import shutil
import time

from tests.calibration.conftest import counting_passes
from attnvgg.calibration.cache import default_cache_dir
from attnvgg.calibration.int8 import calibrate
from attnvgg.config import CalibrateSpec


def _run(src, data, out, cache_dir, **kw):
    notes: list[str] = []
    spec = CalibrateSpec(batch_size=4, cache_dir=str(cache_dir), **kw)
    t0 = time.perf_counter()
    with counting_passes() as passes:
        r = calibrate(src, data, out, spec, log=notes.append, progress=False)
    return r, len(passes), time.perf_counter() - t0, notes


def test_second_run_hits_the_cache_and_skips_calibration(tiny_global, make_dataset, rand_images, tmp_path):
    data = make_dataset(rand_images(12))
    cache = tmp_path / "cache"
    r1, passes1, _, _ = _run(tiny_global, data, tmp_path / "a.onnx", cache)
    assert passes1 == 1 and not r1.cache_hit
    entries = list(cache.iterdir())
    assert len(entries) == 1
    ranges = json.loads(entries[0].read_text())["ranges"]
    assert ranges and all(len(v) == 2 and v[0] <= v[1] for v in ranges.values())
    data.batches_read = 0
    r2, passes2, seconds, notes = _run(tiny_global, data, tmp_path / "b.onnx", cache)
    assert passes2 == 0 and r2.cache_hit and r2.calibration_s == 0
    assert any(n.startswith("calibration cache hit: ") for n in notes)
    assert data.batches_read == 0          # the images are not even read
    assert seconds < 10
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    # the flavour does not change ranges: switching it reuses the entry
    r3, passes3, _, _ = _run(tiny_global, data, tmp_path / "c.onnx", cache, flavour="cpu")
    assert passes3 == 0 and r3.cache_hit


def test_changed_method_or_data_recalibrates(tiny_global, make_dataset, rand_images, tmp_path):
    cache = tmp_path / "cache"
    data = make_dataset(rand_images(8))
    assert _run(tiny_global, data, tmp_path / "a.onnx", cache)[1] == 1
    assert _run(tiny_global, data, tmp_path / "b.onnx", cache, method="percentile")[1] == 1
    other = make_dataset(rand_images(8, seed=7))
    assert _run(tiny_global, other, tmp_path / "c.onnx", cache)[1] == 1
    assert _run(tiny_global, data, tmp_path / "d.onnx", cache, num_images=4)[1] == 1
    assert _run(tiny_global, data, tmp_path / "e.onnx", cache, keep_float="none")[1] == 1
    assert len(list(cache.iterdir())) == 5
    assert _run(tiny_global, data, tmp_path / "f.onnx", cache, method="percentile")[1] == 0


def test_entry_from_another_model_is_ignored_with_a_message(tiny_global, tiny_global_retrained, make_dataset,
                                                            rand_images, tmp_path):
    cache = tmp_path / "cache"
    data = make_dataset(rand_images(8))
    model = tmp_path / "model.onnx"
    shutil.copy(tiny_global, model)
    assert _run(model, data, tmp_path / "a.onnx", cache)[1] == 1
    shutil.copy(tiny_global_retrained, model)  # re-exported after training: same path, another model
    r, passes, _, notes = _run(model, data, tmp_path / "b.onnx", cache)
    assert passes == 1 and not r.cache_hit
    assert any("was made for another model" in n for n in notes)
    assert len(list(cache.iterdir())) == 1     # the stale entry was replaced
    assert _run(model, data, tmp_path / "c.onnx", cache)[1] == 0


def test_corrupt_entry_is_a_miss(tiny_global, make_dataset, rand_images, tmp_path):
    cache = tmp_path / "cache"
    data = make_dataset(rand_images(8))
    _run(tiny_global, data, tmp_path / "a.onnx", cache)
    (entry,) = cache.iterdir()
    entry.write_text("{not json")
    r, passes, _, notes = _run(tiny_global, data, tmp_path / "b.onnx", cache)
    assert passes == 1 and any("unreadable" in n for n in notes)


def test_no_cache_and_env_default(tiny_global, make_dataset, rand_images, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNVGG_CACHE_DIR", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "calib"
    data = make_dataset(rand_images(8))
    spec = CalibrateSpec(batch_size=4)
    calibrate(tiny_global, data, tmp_path / "a.onnx", spec, progress=False)
    assert len(list((tmp_path / "root" / "calib").iterdir())) == 1
    spec = CalibrateSpec(batch_size=4, cache=False, cache_dir=str(tmp_path / "off"))
    with counting_passes() as passes:
        calibrate(tiny_global, data, tmp_path / "b.onnx", spec, progress=False)
        calibrate(tiny_global, data, tmp_path / "c.onnx", spec, progress=False)
    assert len(passes) == 2 and not (tmp_path / "off").exists()
