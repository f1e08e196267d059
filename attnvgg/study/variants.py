"""The study's model variants: which attention goes into blocks 3, 4 and 5."""

from __future__ import annotations

from attnvgg.artifacts import sha256_file
from attnvgg.config import from_dict, read_toml
from attnvgg.data import synthetic
from attnvgg.config import TrainSpec
from attnvgg.errors import InputError

ATTENTION: dict[str, tuple[str, str, str]] = {
    "plain": ("none", "none", "none"),
    "global": ("global", "global", "global"),
    "se": ("se", "se", "se"),
    "cbam": ("cbam", "cbam", "cbam"),
    "global-b5": ("none", "none", "global"),
}
DESCRIPTION = {
    "plain": "no attention",
    "global": "global self-attention, blocks 3-5 (the default model)",
    "se": "squeeze-and-excitation, blocks 3-5",
    "cbam": "CBAM, blocks 3-5",
    "global-b5": "global self-attention, block 5 only",
}


def check_variants(names: list[str]) -> None:
    bad = [n for n in names if n not in ATTENTION]
    if bad:
        raise InputError(f"unknown study variant(s) {', '.join(bad)}", f"variants are {', '.join(ATTENTION)}")
    if len(set(names)) != len(names):
        raise InputError(f"study variants repeat: {', '.join(names)}", "name each variant once")
    if not names:
        raise InputError("no study variants given", f"pick from {', '.join(ATTENTION)}")


def builtin_recipe_matches(spec: TrainSpec) -> str | None:
    """Why the shipped checkpoint can stand for ``spec``: None if its recorded recipe, data version
    and checksum do not all match (then the variant is trained like the others)."""
    from importlib import resources
    from pathlib import Path


    toml = Path(str(resources.files("attnvgg") / "assets" / "builtin.toml"))
    if not toml.is_file():
        return None
    doc = read_toml(toml)
    shipped = from_dict(TrainSpec, doc.get("train", {}), "train")
    result = doc.get("result", {})
    if shipped != spec or result.get("data") != f"builtin:train (generator v{synthetic.GENERATOR_VERSION})":
        return None
    ckpt = toml.parent / str(doc.get("model", {}).get("checkpoint", ""))
    if not ckpt.is_file() or sha256_file(ckpt) != result.get("checkpoint_sha256"):
        return None
    return f"shipped {ckpt.name} (sha256 {result['checkpoint_sha256'][:12]}, same [train] recipe and data)"
