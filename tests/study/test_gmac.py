"""MAC counting from ONNX graphs against hand counts."""

from __future__ import annotations

import pytest

from attnvgg.study.gmac import count_macs


def _graph(nodes, inputs, outputs, inits):
    from onnx import helper

    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _t(name, shape):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _w(name, shape):
    import numpy as np
    from onnx import numpy_helper

    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def test_one_conv_hand_count():
    from onnx import helper

    # 3 -> 4 channels, 3x3 kernel, padding 1, 8x8: every one of 4*8*8 outputs costs 3*3*3 MACs
    m = _graph([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])],
               [_t("x", ["batch", 3, 8, 8])], [_t("y", None)], [_w("w", (4, 3, 3, 3)), _w("b", (4,))])
    c = count_macs(m)
    assert c.total == 4 * 8 * 8 * 3 * 3 * 3 == 6912
    assert c.by_op == {"Conv": 6912} and c.attention == 0 and not c.uncounted


def test_grouped_strided_conv_hand_count():
    from onnx import helper

    # depthwise-style: 8 channels in 2 groups, 3x3, stride 2 on 8x8 -> 4x4; each output reads 4*3*3 inputs
    m = _graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2], group=2)],
               [_t("x", [1, 8, 8, 8])], [_t("y", None)], [_w("w", (8, 4, 3, 3))])
    assert count_macs(m).total == 8 * 4 * 4 * 4 * 3 * 3


def test_one_gemm_hand_count():
    from onnx import helper

    m = _graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
               [_t("x", ["batch", 10])], [_t("y", None)], [_w("w", (5, 10)), _w("b", (5,))])
    c = count_macs(m)
    assert c.total == 10 * 5 and c.by_op == {"Gemm": 50}


def test_one_global_attention_block_hand_count(tmp_path):
    """Conv 3->16 (1x1) then GlobalAttention(16) at 4x4: q/k 1x1 convs 16->2, v 16->16, q x k, attn x v."""
    import torch
    from torch import nn

    from attnvgg.models.attention import GlobalAttention

    att = GlobalAttention(16)
    with torch.no_grad():
        att.gamma.fill_(0.5)
    model = nn.Sequential(nn.Conv2d(3, 16, 1), att).eval()
    path = tmp_path / "att.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 4, 4),), str(path), dynamo=True, external_data=False)
    c, n, ci = 16, 16, 2   # channels, positions (4x4), query/key channels (16 // 8)
    hand_attention = (n * ci * c) * 2 + n * c * c + n * n * ci + c * n * n
    res = count_macs(path)
    assert res.attention_blocks == 1
    assert res.attention == hand_attention == 9728
    assert res.total == hand_attention + 16 * 16 * 3      # plus the first conv, not attention
    assert res.by_op["MatMul"] == n * n * ci + c * n * n


def test_se_and_cbam_blocks_found_by_structure(tiny_exports):
    """SE's two Gemms per block (16->1->16, 32->2->32 twice) are its whole extra cost over the plain model."""
    plain, se, cbam, glob = (count_macs(tiny_exports[k]) for k in ("none", "se", "cbam", "global"))
    assert plain.attention == 0 and plain.attention_blocks == 0
    assert se.attention_blocks == 3 and se.attention == (16 + 16) + (64 + 64) * 2 == 288
    assert se.total - plain.total == se.attention
    assert cbam.attention_blocks == 6                    # a channel and a spatial gate per block
    assert cbam.total - plain.total == cbam.attention
    assert glob.attention_blocks == 3 and glob.total - plain.total == glob.attention


def test_unknown_shapes_are_listed_not_guessed():
    from onnx import helper

    m = _graph([helper.make_node("MatMul", ["a", "b"], ["y"])], [_t("a", None), _t("b", None)], [_t("y", None)], [])
    c = count_macs(m)
    assert c.total == 0 and c.uncounted == ["MatMul"]


@pytest.mark.slow
def test_full_size_global_model_matches_the_field_notes():
    """19.26 GMAC at 224, 3.79 in attention (FIELD-NOTES.md, counted by a different script)."""
    from attnvgg.study.gmac import count_full_size

    c = count_full_size(["global"] * 3, 224)
    assert round(c.gmac, 2) == 19.26 and round(c.attention_gmac, 2) == 3.79
