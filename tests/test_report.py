"""The PDF report and its Markdown tables, built from the synthetic results fixture."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from prt_bench.io import atomic_write_json, config_hash
from prt_bench.report import build_report
from prt_bench.report.claims import FAIL, NO_DATA, PASS, check_claims
from prt_bench.report.results import aggregate, load_results
from prt_bench.report.tables import Lookup

FIXTURE = Path(__file__).parent / "fixtures" / "report" / "synthetic_mini"
TASKS = ("mini_gsm (language)", "fashion_mnist (vision)")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    pdf = build_report(FIXTURE, tmp_path_factory.mktemp("report") / "mini.pdf")
    reader = PdfReader(pdf)
    texts = [p.extract_text() or "" for p in reader.pages]
    return pdf, reader, texts


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def test_report_has_a_title_page_with_suite_commit_and_hardware(report):
    _, _, texts = report
    title = texts[0]
    assert "prt-bench report — suite mini" in title
    assert "Git commit of the results: " + "0" * 40 in title
    assert "Hardware: fixture, x86_64, 2 CPU cores, device cpu" in title
    assert "Report built:" in title
    # the fixture's cells were kept before they recorded when they finished: no date is made up
    assert "finished not recorded in these cells" in " ".join(title.split())


def test_report_has_every_section(report):
    _, _, texts = report
    heads = [_first_line(t) for t in texts]
    expected = ["Contents", "Claims checklist", "Cost: language", "Cost: vision", "Appendix: every result"]
    for task in TASKS:
        expected += [f"Results: {task}", f"Transfer heatmaps: {task}", f"Scenarios: {task}",
                     f"Entropy ablation: {task}", f"Entropy ablation: {task} (table)"]
    missing = [e for e in expected if e not in heads]
    assert not missing, f"sections missing from the PDF: {missing}"


def test_contents_page_numbers_point_at_their_sections(report):
    _, reader, texts = report
    entries = re.findall(r"^\s*(.+?)\s+····\s+page (\d+)$", texts[1], flags=re.M)
    assert len(entries) == 13  # a world card per task, claims, 4 per task, cost, appendix
    for title, page in entries:
        assert _first_line(texts[int(page) - 1]).startswith(title.strip())
    outline = [item.title for item in reader.outline if not isinstance(item, list)]
    assert outline[:5] == ["Title", "Contents", "World card: mini_gsm", "World card: fashion_mnist", "Claims checklist"]


def test_heatmaps_are_embedded_as_images_and_charts_have_axes(report):
    _, reader, texts = report
    heat = [i for i, t in enumerate(texts) if _first_line(t).startswith("Transfer heatmaps:")]
    assert len(heat) == 2
    for i, target in zip(heat, ("qwen-s-v1", "rn-s-v1")):
        assert len(reader.pages[i].images) >= 3  # PRT, EFT and PRT − target alone (+ colour bars)
        assert "PRT − target alone" in texts[i] and target in texts[i]
    scen = next(t for t in texts if _first_line(t) == "Scenarios: mini_gsm (language)")
    for label in ("upscaling", "update", "other arch", "base alone", "EFT", "PRT", "FT (target)"):
        assert label in scen
    abl = next(t for t in texts if _first_line(t) == "Entropy ablation: mini_gsm (language)")
    # One panel per target that PRT was run on at several α: not the unswept qwen-s-v1.
    assert "reward only" in abl and "llama-s-v1 → llama-m-v1" in abl and "qwen-s-v1" not in abl


def test_results_table_shows_std_over_seeds_else_a_binomial_error(report):
    _, _, texts = report
    page = next(t for t in texts if _first_line(t) == "Results: mini_gsm (language)")
    assert "0.614 ± 0.001" in page  # PRT llama-s-v1 → llama-m-v1: two seeds, their std
    vision = next(t for t in texts if _first_line(t) == "Results: fashion_mnist (vision)")
    # One seed, no stderr, 1000 samples: sqrt(p (1 - p) / n) for p = 0.869 is 0.011.
    assert "0.869 ± 0.011" in vision


def test_cost_section_shows_train_and_inference_time_and_memory(report):
    _, _, texts = report
    cost = next(t for t in texts if _first_line(t) == "Cost: language")
    for label in ("train: time (× = ratio to FT)", "train: memory", "decode: time", "decode: memory", "1.25×"):
        assert label in cost
    vision = next(t for t in texts if _first_line(t) == "Cost: vision")
    assert "inference: time" in vision


def test_markdown_tables_are_written_next_to_the_pdf(report):
    pdf, _, _ = report
    md = pdf.with_suffix(".md").read_text(encoding="utf-8")
    assert "| scenario | source → target | source alone | target alone |" in md
    assert "## Claims checklist" in md and "| PRT ≈ EFT | FAIL |" in md
    assert "### Entropy ablation: mini_gsm" in md and "| llama-s-v1 | 0.1 |" in md
    assert "### Cost: lm" in md and "0.125 s / step" in md
    assert "## Appendix: every result" in md


def test_claims_are_decided_from_the_numbers():
    lk = Lookup(load_results(FIXTURE).agg)
    claims = {c.title: c for c in check_claims(lk)}
    # the fixture has no per-sample records: each difference is judged on a normal approximation
    # from the two error bars (so the α claim's wide intervals cannot show PRT holds within 3 points,
    # nor the same-base claim's that PRT and FT are within 3 points of each other)
    assert [c.status for c in claims.values()] == [FAIL, PASS, FAIL, FAIL, FAIL]
    assert all("too wide to show them within ±0.03" in text
               for _, text in claims["PRT on the training base ≈ FT"].checks)
    eft = claims["PRT ≈ EFT"]
    failed = [text for ok, text in eft.checks if not ok]
    assert len(failed) == 2 and "vit-s-v1→vit-s-v2" in failed[0] and "Δ = -0.076 [-0.109, -0.042]" in failed[0]
    assert all("unpaired normal (no per-sample records)" in text for c in claims.values() for _, text in c.checks)


def test_claims_without_cells_are_no_data():
    claims = check_claims(Lookup(aggregate(pd.DataFrame(columns=load_results(FIXTURE).rows.columns))))
    assert {c.status for c in claims} == {NO_DATA}


def test_error_bar_is_std_over_seeds_else_stderr():
    rows = pd.DataFrame([
        {"modality": "lm", "task": "t", "method": "prt", "source": "a", "target": "b", "alpha": 0.0, "seed": s,
         "scenario": "update", "metric": "m", "value": v, "stderr": 0.02}
        for s, v in ((0, 0.4), (1, 0.5))
    ] + [{"modality": "lm", "task": "t", "method": "zeroshot", "source": None, "target": "b", "alpha": 0.0,
          "seed": 0, "scenario": None, "metric": "m", "value": 0.1, "stderr": 0.03}])
    agg = aggregate(rows).set_index("method")
    assert agg.loc["prt", "mean"] == pytest.approx(0.45)
    assert agg.loc["prt", "err"] == pytest.approx(math.sqrt(0.005))  # sample std of 0.4, 0.5
    assert agg.loc["prt", "n_seeds"] == 2
    assert agg.loc["zeroshot", "err"] == pytest.approx(0.03)


def test_table_csv_is_read_when_there_are_no_cell_files(tmp_path):
    shutil.copy(FIXTURE / "table.csv", tmp_path / "table.csv")
    res = load_results(tmp_path)
    assert len(res.rows) == 84  # one row per evaluation cell: the primary metric of its task, not acc5 or nll
    assert set(res.rows["metric"]) == {"exact_match,strict-match", "acc1,none"}


def test_main_tables_use_the_alpha_prt_was_run_at_on_most_targets():
    rows = pd.DataFrame([
        {"modality": "lm", "task": "t", "method": "prt", "source": "a", "target": t, "alpha": a, "seed": 0,
         "scenario": None, "metric": "m", "value": 0.5, "stderr": None}
        for t, a in (("b", 0.01), ("c", 0.01), ("b", 0.0), ("b", 0.1))
    ])
    assert Lookup(aggregate(rows)).main_alpha("t", "a") == 0.01


def _small_results(root: Path) -> Path:
    """Two base cells of one task: no transfers, no α sweep, no profiles."""
    for method in ("zeroshot", "ft_target"):
        config = {"suite": "smoke", "task": "toy", "method": method, "target": "base-a", "seed": 0}
        h = config_hash(config)
        atomic_write_json(root / "cells" / f"{h}.json", {
            "schema": "prt-bench/cell/1", "cell_id": h, "suite": "smoke", "kind": "eval", "modality": "lm",
            "task": "toy", "scenario": None, "method": method, "source": None, "target": "base-a", "alpha": 0.0,
            "seed": 0, "config": config, "config_hash": h,
            "results": {"toy": {"exact_match,none": 0.2 if method == "zeroshot" else 0.7}},
            "primary_metric": "exact_match,none", "environment": {}, "timing": {}, "status": "done",
        })
    return root


def test_sections_without_data_say_no_data(tmp_path):
    results = _small_results(tmp_path / "results" / "smoke")
    out = tmp_path / "reports" / "smoke.pdf"
    run = CliRunner().invoke(__import__("prt_bench.cli", fromlist=["app"]).app, ["report", str(results), "--out", str(out)])
    assert run.exit_code == 0, run.output
    texts = [p.extract_text() or "" for p in PdfReader(out).pages]
    heads = {_first_line(t): t for t in texts}
    assert "No data" in heads["Transfer heatmaps: toy (language)"]
    assert "No data" in heads["Entropy ablation: toy (language)"]
    assert "No data" in heads["Cost"]
    assert "| – → base-a | – | 0.200 |" in out.with_suffix(".md").read_text(encoding="utf-8")


def test_heatmaps_of_many_targets_get_a_page_each():
    import matplotlib.pyplot as plt

    from prt_bench.report.figures import heatmap_figures

    rows = pd.DataFrame([
        {"modality": "lm", "task": "t", "method": m, "source": "src", "target": f"target-{i}", "alpha": 0.0,
         "seed": 0, "scenario": "upscaling", "metric": "m", "value": 0.5, "stderr": None}
        for i in range(8) for m in ("prt", "eft")
    ])
    figs = heatmap_figures(Lookup(aggregate(rows)), "t", "Transfer heatmaps: t")
    assert len(figs) == 2  # PRT and EFT, each on its own page (no base-alone cells: no gain panel)
    for fig in figs:
        plt.close(fig)


def test_vision_cells_export_in_clip_benchmarks_shape(tmp_path):
    import json

    from prt_bench.report.export import export_clip_benchmark
    from prt_bench.suite.store import write_cell

    base = {"schema": "prt-bench/cell/1", "suite": "s", "kind": "eval", "modality": "vision", "task": "fm",
            "scenario": "upscaling", "status": "done", "primary_metric": "acc1,none", "seed": 0,
            "config": {"task_config": {"dataset": "fashion_mnist", "split": "test[:8]"}},
            "results": {"fm": {"acc1,none": 0.5, "acc5,none": 1.0, "mean_per_class_recall,none": 0.25, "nll,none": 1.2,
                               "n_samples": 8}}}
    write_cell(tmp_path, {**base, "cell_id": "a", "method": "prt", "source": "s1", "target": "m1", "alpha": 0.1})
    write_cell(tmp_path, {**base, "cell_id": "b", "method": "ft_source", "source": "s1", "target": "m1", "alpha": 0.0})
    write_cell(tmp_path, {**base, "cell_id": "c", "modality": "lm", "method": "zeroshot", "target": "x", "alpha": 0.0})
    written = export_clip_benchmark(tmp_path, tmp_path / "cb")
    got = {p.stem: json.loads(p.read_text()) for p in written}
    assert set(got) == {"a", "b"}
    assert got["a"] == {"dataset": "fashion_mnist", "model": "m1", "pretrained": "prt:s1@alpha=0.1",
                        "task": "zeroshot_classification", "language": "en", "split": "test[:8]", "cell_id": "a",
                        "suite": "s", "metrics": {"acc1": 0.5, "acc5": 1.0, "mean_per_class_recall": 0.25}}
    assert (got["b"]["model"], got["b"]["pretrained"]) == ("s1", "ft:s1")
    # what `clip_benchmark build` does with each file: metrics and fields flattened into one CSV row
    row = {**got["a"]["metrics"], **{k: v for k, v in got["a"].items() if k != "metrics"}}
    assert row["model"] + " " + row["pretrained"] == "m1 prt:s1@alpha=0.1" and row["acc1"] == 0.5


def test_prt_at_other_inference_lams_stays_out_of_the_main_tables(tmp_path):
    from prt_bench.report.results import Items
    from prt_bench.report.tables import lam_table
    from prt_bench.suite.store import write_cell

    def cell(cell_id, kind, lam, value, reward="r"):
        record = {"schema": "prt-bench/cell/1", "cell_id": cell_id, "suite": "t", "kind": kind, "modality": "lm",
                  "task": "t", "scenario": "upscaling", "method": "prt", "source": "s", "target": "m", "alpha": 0.0,
                  "seed": 0, "status": "done", "primary_metric": "acc,none",
                  "config": {"lam": lam, "trained": {"reward": reward}},
                  "results": {"t": {"acc,none": value}}}
        if kind == "train":
            record.update(config={"train": {"lam": 2.0}}, results={"t": {}})
        write_cell(tmp_path, record)

    cell("r", "train", None, None)  # the reward, trained with λ = 2
    cell("main", "eval", 2.0, 0.6)
    cell("strong", "eval", 0.5, 0.3)
    cell("weak", "eval", 4.0, 0.5)
    res = load_results(tmp_path)
    lk = Lookup(res.agg, Items(res))
    assert lk.prt("t", "s", "m").mean == 0.6, "the main tables show PRT at the trained λ only"
    assert lk.prt("t", "s", "m", lam=0.5).mean == 0.3
    assert lk.lam_sweeps("t") == [("s", "m", [0.5, 2.0, 4.0])]
    table = lam_table(lk, "t")
    assert list(table["λ"]) == ["4", "2", "0.5"] and list(table["PRT s → m"]) == ["0.500", "0.600", "0.300"]


def test_eft_at_other_strengths_stays_out_of_the_main_tables_and_sits_beside_prt(tmp_path):
    from prt_bench.report.figures import lam_figure
    from prt_bench.report.results import Items
    from prt_bench.report.tables import lam_table
    from prt_bench.suite.store import write_cell

    def cell(cell_id, method, lam, value, needs):
        write_cell(tmp_path, {
            "schema": "prt-bench/cell/1", "cell_id": cell_id, "suite": "t", "kind": "eval", "modality": "lm",
            "task": "t", "scenario": "upscaling", "method": method, "source": "s", "target": "m", "alpha": 0.0,
            "seed": 0, "status": "done", "primary_metric": "acc,none", "config": {"lam": lam, "trained": needs},
            "results": {"t": {"acc,none": value}}})

    for cell_id in ("r", "f"):  # the reward and the FT model, trained with λ unset (1)
        write_cell(tmp_path, {"schema": "prt-bench/cell/1", "cell_id": cell_id, "suite": "t", "kind": "train",
                              "modality": "lm", "task": "t", "method": "prt" if cell_id == "r" else "ft",
                              "target": "s", "alpha": 0.0, "seed": 0, "status": "done",
                              "config": {"train": {}}, "results": {"t": {}}})
    cell("prt", "prt", 1.0, 0.6, {"reward": "r"})
    cell("prt2", "prt", 0.5, 0.4, {"reward": "r"})
    cell("eft", "eft", 1.0, 0.5, {"ft": "f"})
    cell("eft2", "eft", 0.5, 0.2, {"ft": "f"})
    res = load_results(tmp_path)
    lk = Lookup(res.agg, Items(res))
    assert lk.eft("t", "s", "m").mean == 0.5, "the main tables show EFT at strength 1 only"
    assert lk.eft("t", "s", "m", lam=0.5).mean == 0.2
    assert lk.lam_sweeps("t") == [("s", "m", [0.5, 1.0])]
    table = lam_table(lk, "t")
    assert list(table["PRT s → m"]) == ["0.600", "0.400"] and list(table["EFT s → m"]) == ["0.500", "0.200"]
    fig = lam_figure(lk, "t", "λ")
    assert sorted(line.get_label() for line in fig.axes[0].containers) == ["EFT", "PRT"]
