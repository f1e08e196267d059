"""The built-in set: deterministic bytes, disjoint splits, balanced labels that mean what they say."""

from __future__ import annotations

import math

import numpy as np

from attnvgg.data import synthetic


def test_same_seed_same_bytes_and_random_access():
    a, ya = synthetic.generate("val", 0, 12)
    b, yb = synthetic.generate("val", 0, 12)
    assert a.dtype == np.uint8 and a.shape == (12, 64, 64, 3)
    assert a.tobytes() == b.tobytes() and ya.tolist() == yb.tolist()
    # Any image alone equals the same image inside a chunk: batches can be rendered lazily.
    np.testing.assert_array_equal(synthetic.render("val", 7, int(ya[7])), a[7])
    c, _ = synthetic.generate("val", 5, 9)
    np.testing.assert_array_equal(c, a[5:9])


def test_splits_disjoint_in_seeds_and_pixels():
    seeds = [tuple(synthetic.image_seed(s, i)) for s in synthetic.SPLITS for i in range(synthetic.split_size(s))]
    assert len(seeds) == len(set(seeds)) == sum(n for _, n in synthetic.SPLITS.values())
    firsts = [synthetic.generate(s, 0, 3)[0].tobytes() for s in synthetic.SPLITS]
    assert len(set(firsts)) == len(firsts)


def test_labels_balanced():
    for split in synthetic.SPLITS:
        y = synthetic.labels(split)
        counts = np.bincount(y, minlength=8)
        assert len(y) == synthetic.split_size(split) and y.dtype == np.int64
        assert counts.max() - counts.min() <= 1, (split, counts)
        assert not np.array_equal(y[:16], np.sort(y[:16]))       # shuffled, not in blocks


def test_label_is_direction_of_square_from_circle():
    y = synthetic.labels("calib")
    for i in range(64):
        t = synthetic.layout("calib", i, int(y[i]))
        dx = t.square[0] - t.circle[0]
        dy = t.circle[1] - t.square[1]                              # image y grows downwards
        sector = int(((math.degrees(math.atan2(dy, dx)) + 22.5) % 360) // 45)
        assert sector == y[i]
        for c in (t.circle, t.square):                              # both targets fully inside
            assert 0 <= c[0] - 7 and c[0] + 7 < 64 and 0 <= c[1] - 7 and c[1] + 7 < 64
        # The pixels at the centres carry the target colours (warm circle, cool square).
        img = synthetic.render("calib", i, int(y[i])).astype(int)
        cr = img[round(t.circle[1]), round(t.circle[0])]
        sq = img[round(t.square[1]), round(t.square[0])]
        assert cr[0] > cr[2] and sq[2] > sq[0]


def test_class_names():
    names = synthetic.class_names()
    assert len(names) == len(set(names)) == 8 and names[0] == "square-E-of-circle"
