"""Checkpoint compatibility with the reference layout, torchvision import, bad checkpoints."""

import pytest
import torch
from torch import nn

from attnvgg.config import ModelSpec
from attnvgg.errors import InputError
from attnvgg.models.build import build_model
from attnvgg.models.checkpoint import import_torchvision_vgg16, load_state_dict
from attnvgg.models.vgg import VGG16WithAttention


class _RefSelfAttention(nn.Module):
    """The reference class's attention, written out independently of attnvgg."""

    def __init__(self, c):
        super().__init__()
        self.conv_query = nn.Conv2d(c, c // 8, 1)
        self.conv_key = nn.Conv2d(c, c // 8, 1)
        self.conv_value = nn.Conv2d(c, c, 1)
        self.gamma = nn.Parameter(torch.zeros(1))


def reference_layout(num_classes=1000):
    """VGG16 'D' config with attention right after the 2nd conv+ReLU of blocks 3, 4, 5."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, "A", 256, "M", 512, 512, "A", 512, "M", 512, 512, "A", 512, "M"]
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        elif v == "A":
            layers.append(_RefSelfAttention(c))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(True)]
            c = v
    ref = nn.Module()
    ref.features = nn.Sequential(*layers)
    ref.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    ref.classifier = nn.Sequential(nn.Linear(512 * 49, 4096), nn.ReLU(True), nn.Dropout(),
                                   nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, num_classes))
    return ref


def test_state_dict_keys_and_shapes_match_reference_layout():
    ours = {k: tuple(v.shape) for k, v in VGG16WithAttention(1000).state_dict().items()}
    ref = {k: tuple(v.shape) for k, v in reference_layout().state_dict().items()}
    assert ours == ref
    assert ours["features.14.gamma"] == (1,)
    assert ours["features.14.conv_query.weight"] == (32, 256, 1, 1)
    assert ours["classifier.6.weight"] == (1000, 4096)


def test_reference_checkpoint_round_trips(tmp_path):
    ref = reference_layout(num_classes=10)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_()
    path = tmp_path / "ref.pt"
    torch.save(ref.state_dict(), path)
    model = build_model(ModelSpec(num_classes=10, checkpoint=str(path)))
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_mismatched_checkpoint_lists_missing_unexpected_and_misshaped(tmp_path):
    sd = VGG16WithAttention(10, ["global"] * 3, width=1 / 16).state_dict()
    sd.pop("features.14.gamma")
    sd["extra.weight"] = torch.zeros(1)
    sd["classifier.6.weight"] = torch.zeros(7, 3)
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    with pytest.raises(InputError) as e:
        build_model(ModelSpec(num_classes=10, width=1 / 16, checkpoint=str(path)))
    msg = str(e.value)
    assert "1 missing: features.14.gamma" in msg
    assert "1 unexpected: extra.weight" in msg
    assert "classifier.6.weight (7, 3) vs model (10, 256)" in msg
    assert "\n" not in msg


def test_pickled_module_refused_without_opt_in(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(VGG16WithAttention(10, width=1 / 16), path)  # whole module: needs unpickling
    with pytest.raises(InputError, match="--trust-checkpoint"):
        load_state_dict(path)
    sd = load_state_dict(path, trust=True)
    assert "features.14.gamma" in sd


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_text("hello")
    with pytest.raises(InputError, match="not a readable PyTorch checkpoint"):
        load_state_dict(path)


def _torchvision_vgg16_state(num_classes=1000, width=1.0):
    """torchvision's vgg16 key layout (features 0..30, classifier 0..6), built here."""
    from attnvgg.models.vgg import scaled

    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, scaled(v, width), 3, padding=1), nn.ReLU(True)]
            c = scaled(v, width)
    feats = nn.Sequential(*layers)
    hidden = scaled(4096, width)
    cls = nn.Sequential(nn.Linear(c * 49, hidden), nn.ReLU(True), nn.Dropout(), nn.Linear(hidden, hidden),
                        nn.ReLU(True), nn.Dropout(), nn.Linear(hidden, num_classes))
    sd = {f"features.{k}": v for k, v in feats.state_dict().items()}
    sd.update({f"classifier.{k}": v for k, v in cls.state_dict().items()})
    return sd


def test_torchvision_import_remaps_and_reports_new_tensors():
    tv = _torchvision_vgg16_state(num_classes=10, width=1 / 16)
    assert "features.28.weight" in tv and "features.30.weight" not in tv
    model = VGG16WithAttention(10, ["global"] * 3, width=1 / 16)
    report = import_torchvision_vgg16(model, tv)
    sd = model.state_dict()
    assert torch.equal(sd["features.15.weight"], tv["features.14.weight"])  # block 3, conv 3
    assert torch.equal(sd["features.23.weight"], tv["features.21.weight"])  # block 4, conv 3
    assert torch.equal(sd["features.31.weight"], tv["features.28.weight"])  # block 5, conv 3
    assert torch.equal(sd["classifier.6.weight"], tv["classifier.6.weight"])
    assert report["new"] and all(k.split(".")[1] in ("14", "22", "30") for k in report["new"])
    assert not report["skipped"]


def test_torchvision_import_with_other_head_keeps_head_new():
    tv = _torchvision_vgg16_state(num_classes=1000, width=1 / 16)
    model = VGG16WithAttention(10, ["se"] * 3, width=1 / 16)
    report = import_torchvision_vgg16(model, tv)
    assert "classifier.6.weight" in report["new"] and "classifier.6.weight" in report["skipped"]


def test_factory_model(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(
        "import torch.nn as nn\n"
        "def build():\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))\n"
        "def not_a_module():\n    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    m = build_model(ModelSpec(factory="mynets:build", arch="custom"))
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 5)
    with pytest.raises(InputError, match="not an nn.Module"):
        build_model(ModelSpec(factory="mynets:not_a_module", arch="custom"))
    with pytest.raises(InputError, match="package.module:factory"):
        build_model(ModelSpec(factory="mynets", arch="custom"))
    with pytest.raises(InputError, match="cannot import"):
        build_model(ModelSpec(factory="no_such_pkg_xyz:f", arch="custom"))
