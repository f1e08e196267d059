import pytest
import torch

from attnvgg.models.attention import CBAM, GlobalAttention, SEBlock, SpatialAttention
from attnvgg.models.build import set_gamma
from attnvgg.models.vgg import VGG16WithAttention


@pytest.mark.parametrize("module", [GlobalAttention(16), SEBlock(16), CBAM(16)])
def test_attention_keeps_shape(module):
    x = torch.randn(2, 16, 8, 8)
    assert module(x).shape == x.shape


def test_global_attention_is_identity_at_gamma_zero_and_not_otherwise():
    torch.manual_seed(0)
    m = GlobalAttention(16).eval()
    x = torch.randn(2, 16, 6, 6)
    assert torch.equal(m(x), x)
    with torch.no_grad():
        m.gamma.fill_(0.5)
    assert not torch.allclose(m(x), x)


def test_global_attention_matches_explicit_formula():
    torch.manual_seed(0)
    m = GlobalAttention(16).eval()
    with torch.no_grad():
        m.gamma.fill_(0.7)
    x = torch.randn(1, 16, 4, 5)
    q = m.conv_query(x).flatten(2)[0]  # C', N
    k = m.conv_key(x).flatten(2)[0]
    v = m.conv_value(x).flatten(2)[0]  # C, N
    attn = torch.softmax(q.T @ k, dim=-1)  # N, N
    expected = (0.7 * (v @ attn.T)).reshape(1, 16, 4, 5) + x
    assert torch.allclose(m(x), expected, atol=1e-5)


def test_cbam_spatial_gate_multiplies_block_input():
    torch.manual_seed(0)
    m = CBAM(8).eval()
    x = torch.randn(1, 8, 5, 5)
    gated = x * m.channel(x)
    expected = gated * m.spatial(gated)
    assert torch.allclose(m(x), expected)
    # the spatial gate is a sigmoid map in (0, 1), one channel
    s = SpatialAttention()(gated)
    assert s.shape == (1, 1, 5, 5) and float(s.min()) > 0 and float(s.max()) < 1


@pytest.mark.parametrize("kind", ["global", "se", "cbam", "none"])
def test_vgg_output_shape(kind):
    m = VGG16WithAttention(10, [kind] * 3, width=1 / 16).eval()
    assert m(torch.randn(3, 3, 32, 32)).shape == (3, 10)


@pytest.mark.parametrize("kind", ["global", "se", "cbam"])
def test_attention_changes_model_output(kind):
    """Replacing the attention with identity must change the logits (gamma != 0 for global)."""
    torch.manual_seed(0)
    m = VGG16WithAttention(10, [kind] * 3, width=1 / 16).eval()
    set_gamma(m, 0.5)
    plain = VGG16WithAttention(10, ["none"] * 3, width=1 / 16).eval()
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if k in plain.state_dict()})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(m(x), plain(x), atol=1e-7)


def test_model_init_leaves_the_global_rng_where_default_init_does(monkeypatch):
    """Seeded code that builds a model and then draws (the trainer) must not depend on our
    torchvision-style re-initialisation: it draws from a fork of the RNG."""
    torch.manual_seed(123)
    a = VGG16WithAttention(8, width=1 / 16)
    after_ours = torch.rand(4)
    monkeypatch.setattr(VGG16WithAttention, "_initialize_weights", lambda self: None)
    torch.manual_seed(123)
    VGG16WithAttention(8, width=1 / 16)
    after_default = torch.rand(4)
    assert torch.equal(after_ours, after_default)
    # and the re-initialisation itself is seeded: same seed, same weights
    torch.manual_seed(123)
    monkeypatch.undo()
    b = VGG16WithAttention(8, width=1 / 16)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
