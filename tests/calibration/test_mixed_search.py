"""The mixed-precision search logic, driven by a fake evaluator (no model, milliseconds)."""

from __future__ import annotations

import pytest

from attnvgg.calibration.groups import LayerGroup
from attnvgg.calibration.mixed import LAST_RESORT, Measurement, search, select_candidates
from attnvgg.errors import InputError


class Additive:
    """Each INT8 group costs its drop and error; float groups cost nothing. Counts every call."""

    def __init__(self, drops: dict[str, float], errors: dict[str, float] | None = None):
        self.drops = drops
        self.errors = errors or {g: d / 100 for g, d in drops.items()}
        self.calls: list[frozenset] = []

    def __call__(self, float_groups: frozenset) -> Measurement:
        self.calls.append(float_groups)
        int8 = [g for g in self.drops if g not in float_groups]
        return Measurement(drop=sum(self.drops[g] for g in int8), error=sum(self.errors[g] for g in int8))


GROUPS = ["fc:a", "attention:b", "gate:c", "other:d"]


def test_all_int8_within_budget_stops_after_one_evaluation():
    fake = Additive({"fc:a": 0.1, "attention:b": 0.2, "gate:c": 0.0, "other:d": 0.0})
    r = search(GROUPS, fake, max_drop=0.5)
    assert r.met and r.float_groups == [] and r.evaluations == 1 and fake.calls == [frozenset()]
    assert r.ranking == [] and r.last_resort is None


def test_most_sensitive_first_until_met():
    fake = Additive({"fc:a": 0.3, "attention:b": 4.0, "gate:c": 1.0, "other:d": 0.05})
    r = search(GROUPS, fake, max_drop=0.4)
    assert [s.group for s in r.ranking] == ["attention:b", "gate:c", "fc:a", "other:d"]
    assert r.ranking[0].recovered_drop == pytest.approx(4.0)
    # 0.35 left after attention and gate are in float: stop there, fc and other stay INT8
    assert r.met and r.float_groups == ["attention:b", "gate:c"]
    assert r.final.drop == pytest.approx(0.35)
    # all INT8, last resort, 4 sensitivities; {attention} was measured while ranking, {attention, gate} is new
    assert r.evaluations == 2 + 4 + 1 == len(fake.calls) == len(set(fake.calls))
    assert r.last_resort is not None and r.last_resort.drop == 0


def test_smaller_budget_keeps_at_least_as_many_groups():
    fake_drops = {"fc:a": 0.3, "attention:b": 4.0, "gate:c": 1.0, "other:d": 0.05}
    kept = [len(search(GROUPS, Additive(fake_drops), max_drop=b).float_groups) for b in (5.0, 1.0, 0.4, 0.0)]
    assert kept == sorted(kept) and kept[0] < kept[-1]


def test_unreachable_budget_reports_the_last_resort_without_ranking():
    def measure(float_groups: frozenset) -> Measurement:
        return Measurement(drop=3.0 if float_groups else 9.0, error=0.1)

    r = search(GROUPS, measure, max_drop=0.5)
    assert not r.met and r.evaluations == 2 and r.ranking == []
    assert r.all_int8.drop == 9.0 and r.last_resort.drop == 3.0 and r.final.drop == 3.0
    assert [s["why"] for s in r.steps] == ["all INT8", "last resort, every group but the convolutions in float"]


def test_no_candidates_means_all_int8_is_the_last_resort():
    r = search([], lambda fg: Measurement(drop=2.0, error=0.1), max_drop=1.0)
    assert not r.met and r.evaluations == 1 and r.final.drop == 2.0


def test_ties_rank_in_graph_order_and_continuous_error_beats_coarse_top1():
    # b and d tie on top-1 (coarse) but d recovers more logit error; a and c tie on both
    drops = {"fc:a": 1.0, "attention:b": 1.0, "gate:c": 1.0, "other:d": 1.0}
    errors = {"fc:a": 0.01, "attention:b": 0.02, "gate:c": 0.01, "other:d": 0.05}
    r1 = search(GROUPS, Additive(drops, errors), max_drop=0.0)
    r2 = search(GROUPS, Additive(drops, errors), max_drop=0.0)
    assert [s.group for s in r1.ranking] == ["other:d", "attention:b", "fc:a", "gate:c"]
    assert r1.ranking == r2.ranking


def test_budget_equal_to_the_drop_is_met_despite_float_rounding():
    r = search(["fc:a"], lambda fg: Measurement(drop=100 * (0.9 - 0.895), error=0.0), max_drop=0.5)
    assert r.met


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_bad_budget_is_refused(bad):
    with pytest.raises(InputError):
        search(GROUPS, Additive({g: 1.0 for g in GROUPS}), max_drop=bad)


# ------------------------------------------------------------------ convolutions as candidates

LAYERS = [LayerGroup("conv:c1", "conv", ["c1"]), LayerGroup("attention:b", "attention", ["sm"]),
          LayerGroup("conv:c2", "conv", ["c2"]), LayerGroup("fc:a", "fc", ["g"]),
          LayerGroup("other:shape", "other", ["reshape"])]
QUANTIZED = {"c1", "sm", "c2", "g"}          # the reshape-only group never runs INT8


def test_conv_groups_are_candidates_only_when_allowed():
    assert select_candidates(LAYERS, QUANTIZED) == ["attention:b", "fc:a"]
    assert select_candidates(LAYERS, QUANTIZED, allow_float_conv=True) == ["conv:c1", "attention:b", "conv:c2", "fc:a"]


def test_budget_out_of_reach_with_int8_convs_is_met_when_convs_may_be_float():
    drops = {"conv:c1": 0.1, "attention:b": 2.0, "conv:c2": 1.5, "fc:a": 0.2}
    # without the flag the last resort still pays both convs: 1.6 > 0.5
    plain = search(select_candidates(LAYERS, QUANTIZED), Additive(drops), max_drop=0.5)
    assert not plain.met and plain.last_resort.drop == pytest.approx(1.6) and plain.ranking == []
    assert plain.steps[1]["why"] == f"last resort, {LAST_RESORT[False]}"

    fake = Additive(drops)
    r = search(select_candidates(LAYERS, QUANTIZED, True), fake, max_drop=0.5, last_resort=LAST_RESORT[True])
    assert [s.group for s in r.ranking] == ["attention:b", "conv:c2", "fc:a", "conv:c1"]
    assert r.met and r.float_groups == ["attention:b", "conv:c2"] and r.final.drop == pytest.approx(0.3)
    assert r.steps[1]["why"] == "last resort, every group in float" and r.last_resort.drop == 0
    assert r.evaluations == 2 + 4 + 1 == len(set(fake.calls)) == len(fake.calls)


def test_a_group_with_negative_sensitivity_is_never_kept_in_float():
    """The issue's fc:classifier.6: in float it recovers logit error but top-1 gets worse
    ("recovered -0.40 points"): never kept. A group with no effect alone stays a candidate."""
    table = {frozenset(): (1.8, 1.2e-3), frozenset(GROUPS): (0.0, 0.0),
             frozenset({"attention:b"}): (0.8, 2.0e-4), frozenset({"fc:a"}): (2.2, 1.1e-3),
             frozenset({"gate:c"}): (1.8, 1.2e-3), frozenset({"other:d"}): (1.4, 1.15e-3)}

    def measure(fg: frozenset) -> Measurement:
        if fg in table:
            d, e = table[fg]
            return Measurement(drop=d, error=e)
        return Measurement(drop=0.2 if fg == frozenset({"attention:b", "other:d"}) else 0.5, error=1e-4)

    r = search(GROUPS, measure, max_drop=0.3)
    assert [s.group for s in r.ranking][:2] == ["attention:b", "fc:a"]     # fc ranks high on logit error ...
    assert r.met and r.float_groups == ["attention:b", "other:d"]           # ... but is never kept in float
    assert r.not_helping == ["fc:a"]
    assert all("fc:a" not in s["float_groups"] for s in r.steps if s["why"].endswith("in float") and
               not s["why"].startswith("last resort"))


def test_only_harmful_groups_left_means_not_met():
    def measure(fg: frozenset) -> Measurement:
        if not fg:
            return Measurement(drop=1.0, error=1e-3)
        if fg == frozenset(GROUPS):
            return Measurement(drop=0.0, error=0.0)
        if fg == frozenset({"attention:b"}):
            return Measurement(drop=0.6, error=5e-4)
        return Measurement(drop=1.2 if len(fg) == 1 else 0.6, error=2e-3 if len(fg) == 1 else 5e-4)

    r = search(GROUPS, measure, max_drop=0.3)
    assert not r.met and r.float_groups == ["attention:b"] and r.final.drop == 0.6
    assert sorted(r.not_helping) == ["fc:a", "gate:c", "other:d"]
