"""Fixtures for the data tests: small image folders and arrays written into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attnvgg.config import PreprocessSpec


@pytest.fixture
def spec() -> PreprocessSpec:
    """Small spec with a real resize (shorter side 40 -> crop 32) so PIL resizing is exercised."""
    return PreprocessSpec(resize=40, crop=32)


def write_image(path: Path, rng: np.random.Generator, size: tuple[int, int] = (48, 36), mode: str = "RGB") -> Path:
    from PIL import Image

    w, h = size
    a = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    img = Image.fromarray(a, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@pytest.fixture
def make_image():
    """The image writer, as a fixture (importing conftest by name breaks with several conftests)."""
    return write_image


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """root/{cat,ant,bee}/ with mixed png/jpg/bmp files, created out of order."""
    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    write_image(root / "cat" / "c1.png", rng)
    write_image(root / "cat" / "c0.JPG", rng)
    write_image(root / "ant" / "a0.bmp", rng, mode="L")
    write_image(root / "ant" / "nested" / "a1.jpeg", rng, size=(20, 70))
    write_image(root / "bee" / "b0.png", rng, mode="RGBA")
    (root / "bee" / "notes.txt").write_text("not an image")
    return root
