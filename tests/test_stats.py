"""Paired statistics: known cases against scipy, and claims decided on per-sample records."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from prt_bench.report import stats
from prt_bench.report.claims import check_claims
from prt_bench.report.results import Items, load_results
from prt_bench.report.tables import Lookup
from prt_bench.suite.store import write_cell


def test_mcnemar_exact_on_known_discordant_counts():
    # 10 items only A gets right, 2 only B, 20 both: exact two-sided p = 2 * P(X <= 2 | 12, 1/2)
    a = np.r_[np.ones(10), np.zeros(2), np.ones(20), np.zeros(8)]
    b = np.r_[np.zeros(10), np.ones(2), np.ones(20), np.zeros(8)]
    d = stats.paired(a, b)
    assert d.test == "McNemar exact"
    assert d.p == pytest.approx(2 * (1 + 12 + 66) / 4096, rel=1e-12)
    assert d.p == pytest.approx(sps.binomtest(10, 12, 0.5).pvalue, rel=1e-12)
    assert d.diff == pytest.approx(8 / 40) and d.n_items == 40
    assert stats.paired(a, a).p == 1.0


def test_paired_bootstrap_interval_agrees_with_scipys_bootstrap():
    rng = np.random.default_rng(3)
    a = (rng.random(400) < 0.7).astype(float)
    b = np.where(rng.random(400) < 0.8, a, 1 - a)
    lo, hi = stats.bootstrap(a, b)
    ref = sps.bootstrap((a, b), lambda x, y, axis=-1: (x - y).mean(axis=axis), paired=True, n_resamples=10_000,
                        method="percentile", rng=np.random.default_rng(0)).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.006) and hi == pytest.approx(ref.high, abs=0.006)
    assert stats.bootstrap(a, b) == (lo, hi), "seeded: the same interval every time"
    # a difference that is the same on every item has no spread
    assert stats.bootstrap(np.full(50, 0.75), np.full(50, 0.25)) == pytest.approx((0.5, 0.5))


def test_permutation_test_for_graded_scores_matches_scipy_and_seeds_widen_the_interval():
    rng = np.random.default_rng(5)
    items = rng.normal(size=60)
    a = items + rng.normal(0.2, 0.3, size=(3, 60))  # three seeds of A
    b = items + rng.normal(0.0, 0.3, size=(2, 60))  # two of B
    d = stats.paired(a, b)
    assert d.test == "paired permutation"
    ref = sps.permutation_test((a.mean(0) - b.mean(0),), np.mean, permutation_type="samples", n_resamples=10_000,
                               rng=np.random.default_rng(0))
    assert d.p == pytest.approx(ref.pvalue, abs=0.01)
    one_seed = stats.bootstrap(a[:1], b[:1])
    assert d.hi - d.lo > one_seed[1] - one_seed[0], "seed-to-seed variation is part of the interval"


def test_unpaired_fallback_is_a_normal_interval():
    d = stats.unpaired(0.6, 0.02, 0.5, 0.03)
    se = math.sqrt(0.02**2 + 0.03**2)
    assert (d.lo, d.hi) == pytest.approx((0.1 - 1.959964 * se, 0.1 + 1.959964 * se), rel=1e-5)
    assert d.p == pytest.approx(2 * sps.norm.sf(0.1 / se)) and "no per-sample records" in d.test


def _cell(cell_id, method, target, hits, source="", top5=None, scenario="upscaling", seed=0):
    top5 = top5 or [1] * len(hits)
    rows = [{"i": i, "label": 0, "pred": 0 if h else 1, "top5": bool(t), "logp_true": -0.1}
            for i, (h, t) in enumerate(zip(hits, top5))]
    n = len(hits)
    return {"schema": "prt-bench/cell/1", "cell_id": cell_id, "suite": "t", "kind": "eval", "modality": "vision",
            "task": "t", "scenario": scenario if source else None, "method": method, "source": source or None,
            "target": target, "alpha": 0.0, "seed": seed, "status": "done", "primary_metric": "acc1,none",
            "results": {"t": {"acc1,none": sum(hits) / n, "acc5,none": sum(top5) / n, "n_samples": n}},
            "samples": {"header": {"modality": "vision", "classes": 2}, "rows": rows}}


def test_a_claim_is_decided_on_the_paired_records_of_two_methods(tmp_path):
    # PRT and the target alone differ on known items: PRT right on 30 items the base misses,
    # the base right on 5 PRT misses, both right on 40, both wrong on 25.
    prt = [1] * 30 + [0] * 5 + [1] * 40 + [0] * 25
    base = [0] * 30 + [1] * 5 + [1] * 40 + [0] * 25
    write_cell(tmp_path, _cell("prt", "prt", "m", prt, source="s"))
    write_cell(tmp_path, _cell("zs-m", "zeroshot", "m", base))
    res = load_results(tmp_path)
    lk = Lookup(res.agg, Items(res))
    (beats,) = [c for c in check_claims(lk) if c.title.startswith("PRT on swapped bases")]
    (ok, text), = beats.checks
    p = sps.binomtest(30, 35, 0.5).pvalue
    assert ok and "McNemar exact" in text and f"p = {p:.2g}" in text and "Δ = +0.250" in text
    d = lk.compare(lk.prt("t", "s", "m"), lk.base_alone("t", "m"))
    assert (d.lo, d.hi) == stats.bootstrap(np.array(prt, float), np.array(base, float))
    assert str(lk.base_alone("t", "m")).startswith("0.450 [")  # tables show the 95 % interval


def test_prt_matches_ft_only_where_the_interval_shows_it_within_three_points(tmp_path):
    # PRT(s→s) and FT(s) with equal means, each right on d items the other misses, on n items:
    # 2000 items show them equal within 3 points; 100 items cannot tell (the interval is too
    # wide), however equal the means; and FT right on 200 more of 2000 shows them apart.
    def same_base(folder, n, prt_only, ft_only):
        prt = [1] * prt_only + [0] * ft_only + [1] * (n // 2) + [0] * (n - n // 2 - prt_only - ft_only)
        ft = [0] * prt_only + [1] * ft_only + [1] * (n // 2) + [0] * (n - n // 2 - prt_only - ft_only)
        write_cell(folder, _cell("prt", "prt", "s", prt, source="s", scenario="same"))
        write_cell(folder, _cell("ft", "ft_source", "s", ft, source="s", scenario="same"))
        res = load_results(folder)
        (same,) = [c for c in check_claims(Lookup(res.agg, Items(res))) if c.title.startswith("PRT on the training")]
        return same.checks[0]

    ok, text = same_base(tmp_path / "many", 2000, 10, 10)
    assert ok and "Δ = +0.000" in text
    ok, text = same_base(tmp_path / "few", 100, 5, 5)
    assert not ok and "Δ = +0.000" in text and "too wide" in text
    ok, text = same_base(tmp_path / "apart", 2000, 0, 200)
    assert not ok and "Δ = -0.100" in text and "apart by more than 0.03" in text


def test_item_scores_average_to_the_metric_for_ifeval_instruction_level_lists():
    """IFEval's instruction-level accuracy flattens every prompt's list: the per-item scores the
    paired statistics draw from must average to that metric (and to the derived mean) exactly."""
    from prt_bench.lm.samples import FLATTEN_MEAN, item_scores, rescore

    inst = [[True], [True, False, False], [False, True], [True, True, True, True]]
    header = {"aggregation": {"prompt": "mean", "inst": FLATTEN_MEAN},
              "derived": {"both,none": ["prompt,none", "inst,none"]}}
    rows = [{"doc_id": i, "filter": "none", "metrics": ["prompt", "inst"], "prompt": float(all(v)), "inst": v}
            for i, v in enumerate(inst)]
    metrics = rescore(header, rows)
    assert metrics["inst,none"] == 7 / 10  # not the mean of the prompts' own shares (0.708)
    for metric in ("prompt,none", "inst,none", "both,none"):
        scores = item_scores(header, rows, metric)
        assert sum(scores.values()) / len(scores) == pytest.approx(metrics[metric], abs=1e-15)


def test_the_same_base_table_pairs_every_metric_of_base_ft_and_prt(tmp_path):
    from prt_bench.report.tables import same_base_table

    base, ft, prt = [0] * 20 + [1] * 10 + [0] * 70, [1] * 60 + [0] * 40, [1] * 55 + [0] * 45
    base5, ft5, prt5 = [1] * 50 + [0] * 50, [1] * 90 + [0] * 10, [1] * 100
    write_cell(tmp_path, _cell("zs", "zeroshot", "s", base, top5=base5))
    write_cell(tmp_path, _cell("ft", "ft_target", "s", ft, top5=ft5))
    write_cell(tmp_path, _cell("prt", "prt", "s", prt, source="s", top5=prt5, scenario="same_base"))
    res = load_results(tmp_path)
    table = same_base_table(Lookup(res.agg, Items(res)), "t").set_index("metric")
    assert list(table.index) == ["acc1,none", "acc5,none"] and set(table["n"]) == {100}
    assert list(table.loc["acc1,none", ["base alone", "FT", "PRT"]]) == ["0.100", "0.600", "0.550"]
    assert list(table.loc["acc5,none", ["base alone", "FT", "PRT"]]) == ["0.500", "0.900", "1.000"]
    a = lambda x: np.array(x, float)  # noqa: E731
    # PRT − FT on acc1: PRT misses 5 items FT gets and gets none FT misses (McNemar exact, 0 of 5)
    lo, hi = stats.bootstrap(a(prt), a(ft))
    assert table.loc["acc1,none", "PRT − FT"] == f"-0.050 [{lo:+.3f}, {hi:+.3f}] p {sps.binomtest(0, 5).pvalue:.2g}"
    lo, hi = stats.bootstrap(a(ft5), a(base5))
    assert table.loc["acc5,none", "FT − base alone"] == f"+0.400 [{lo:+.3f}, {hi:+.3f}] p {sps.binomtest(40, 40).pvalue:.2g}"


def test_answered_is_the_share_of_answers_a_filter_could_extract():
    from prt_bench.lm.samples import item_scores, sample_metrics

    def row(doc, filt, out, hit):
        return {"doc_id": doc, "filter": filt, "filtered_resps": [out], "metrics": ["exact_match"], "exact_match": hit}

    rows = [row(0, "strict-match", "18", 1.0), row(1, "strict-match", "[invalid]", 0.0), row(2, "strict-match", "7", 0.0),
            row(0, "flexible-extract", "18", 1.0), row(1, "flexible-extract", "3", 1.0),
            row(2, "flexible-extract", "[invalid]", 0.0)]
    header = {"aggregation": {"exact_match": "mean"}}
    assert sample_metrics(rows) == ["answered,flexible-extract", "answered,strict-match"]
    assert sample_metrics([row(0, "none", "text", 1.0)]) == []  # a pass-through filter extracts nothing
    assert item_scores(header, rows, "answered,strict-match") == {"0": 1.0, "1": 0.0, "2": 1.0}
    assert item_scores(header, rows, "answered,flexible-extract") == {"0": 1.0, "1": 1.0, "2": 0.0}
    with pytest.raises(KeyError, match="no samples under the filter 'other'"):
        item_scores(header, rows, "answered,other")


def test_the_cost_of_each_cell_lists_training_first_and_marks_missing_fields():
    from prt_bench.report.tables import cell_cost_table

    table = cell_cost_table([
        {"kind": "eval", "method": "prt", "task": "t", "source": "s", "target": "m", "cell_id": "e",
         "timing": {"wall_s": 12.34, "cpu_s": 20.0, "peak_mem_mb": 99.6}},
        {"kind": "train", "method": "ft", "task": "t", "target": None, "cell_id": "f", "timing": {"wall_s": 3.0}}])
    assert table.to_dict("records") == [
        {"cell": "f", "what": "train ft t", "wall s": "3.0", "CPU s": "–", "peak MB": "–"},
        {"cell": "e", "what": "eval prt t s → m", "wall s": "12.3", "CPU s": "20.0", "peak MB": "100"}]


def test_the_world_card_decides_p3_on_the_paired_margin_and_shows_its_room(tmp_path):
    """P3 holds on the target where PRT(s→t) − reward only ≥ 3 points, fails where the target adds
    2 points; the room (FT(t) − reward only) is shown, not decided; the bases' ordering and the
    skill to bring are decided on their CIs."""
    from prt_bench.report.card import world_card

    n = 200
    hits = lambda k: [1] * k + [0] * (n - k)  # noqa: E731
    cells = [("zs-s", "zeroshot", "s", hits(100), ""), ("zs-m", "zeroshot", "m", hits(130), ""),
             ("zs-v", "zeroshot", "v", hits(148), ""), ("ft-s", "ft_source", "s", hits(150), "s"),
             ("ro", "reward_only", "s", hits(154), "s"), ("prt-s", "prt", "s", hits(153), "s"),
             ("prt-m", "prt", "m", hits(162), "s"), ("prt-v", "prt", "v", hits(158), "s"),
             ("ft-m", "ft_target", "m", hits(170), "")]
    for cell_id, method, target, h, source in cells:
        scenario = {"m": "upscaling", "v": "update"}.get(target, "same_base")
        write_cell(tmp_path, _cell(cell_id, method, target, h, source=source, scenario=scenario))
    res = load_results(tmp_path)
    card = {(r["base"], r["precondition"].split(":")[0]): r for r in world_card(Lookup(res.agg, Items(res)), "t")}
    p3 = "P3 the target's knowledge matters"
    assert card[("m", p3)]["holds"] is True and "+0.040" in card[("m", p3)]["measured"]    # 162 − 154 of 200
    assert card[("v", p3)]["holds"] is False and "+0.020" in card[("v", p3)]["measured"]   # 158 − 154
    assert card[("m", "room for P3")]["holds"] is None and "+0.080" in card[("m", "room for P3")]["measured"]
    assert ("v", "room for P3") not in card  # no FT of v was run
    assert card[("m", "knows more alone than the source")]["holds"] is True              # +0.15
    assert card[("m", "the reward has a skill to bring")]["holds"] is True               # 150 vs 130
    assert card[("v", "the reward has a skill to bring")]["holds"] is False              # 150 vs 148: CI reaches 0
    assert card[("s", "PRT on its own base, mean within 0.02 of FT")]["holds"] is True         # 153 − 150


def test_the_world_card_decides_p0_p2_p4_over_the_fine_tuning_seeds(tmp_path):
    """P0 holds where FT's seed std is at most 3 points over 3 seeds and is left open with fewer
    seeds; P2 needs FT(t) above FT(s) in every seed, not only on average; P4 asks the
    other-architecture base's FT for half the items."""
    from prt_bench.report.card import world_card

    n = 200
    hits = lambda k: [1] * k + [0] * (n - k)  # noqa: E731
    scen = {"s": "same_base", "m": "upscaling", "v": "update", "q": "other_arch"}
    ft = {"s": (100, 110, 120), "m": (150, 152, 154), "v": (130, 90, 140)}  # .50/.55/.60: std .05
    for seed in range(3):
        for base, k in ft.items():
            kind, src = ("ft_source", "s") if base == "s" else ("ft_target", "")
            write_cell(tmp_path, _cell(f"ft-{base}-{seed}", kind, base, hits(k[seed]), source=src, seed=seed))
            write_cell(tmp_path, _cell(f"prt-{base}-{seed}", "prt", base, hits(120), "s", scenario=scen[base], seed=seed))
    write_cell(tmp_path, _cell("ft-q", "ft_target", "q", hits(90)))
    write_cell(tmp_path, _cell("prt-q", "prt", "q", hits(80), "s", scenario="other_arch"))
    res = load_results(tmp_path)
    card = {(r["base"], r["precondition"].split(":")[0]): r for r in world_card(Lookup(res.agg, Items(res)), "t")}
    p0, p2 = "P0 FT steady over fine-tuning seeds", "P2 its FT beats the source's FT, in every seed"
    assert card[("s", p0)]["holds"] is False and "std 0.050 over 3 seeds" in card[("s", p0)]["measured"]
    assert card[("m", p0)]["holds"] is True and "std 0.010 over 3 seeds" in card[("m", p0)]["measured"]
    assert card[("q", p0)]["holds"] is None and "needs ≥ 3" in card[("q", p0)]["measured"]
    assert card[("m", p2)]["holds"] is True and "per seed +0.250 +0.210 +0.170" in card[("m", p2)]["measured"]
    assert card[("v", p2)]["holds"] is False and "-0.100" in card[("v", p2)]["measured"]  # seed 1 falls below
    assert card[("q", "P4 a working base")]["holds"] is False and card[("q", "P4 a working base")]["measured"].startswith("0.450")
    assert ("q", p2) not in card and ("m", "P4 a working base") not in card
