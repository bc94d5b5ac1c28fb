"""Leaderboard submissions: packing, each reason for rejection, and a round trip."""

from __future__ import annotations

import copy
import csv
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prt_bench.cli import app
from prt_bench.io import config_hash
from prt_bench.report.leaderboard import SubmissionError, build_leaderboard, pack_submission, seal

FIXTURE = Path(__file__).parent / "fixtures" / "report" / "synthetic_mini"


@pytest.fixture(scope="module")
def good():
    return pack_submission(FIXTURE, name="lab-a")


def _write(folder: Path, name: str, obj) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return p


def _only_rejection(folder: Path, tmp_path: Path) -> list[str]:
    out = build_leaderboard(folder, tmp_path / "out")
    assert len(out.rejected) == 1, out.rejected
    return out.rejected[0][1]


def test_a_good_submission_round_trips_into_the_leaderboard(tmp_path, good):
    subs = tmp_path / "subs"
    _write(subs, "lab-a.json", good)
    out = build_leaderboard(subs, tmp_path / "results")
    assert [f for f, _ in out.accepted] == ["lab-a.json"] and not out.rejected
    with open(tmp_path / "results" / "leaderboard.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(good["cells"]) == 84
    by_id = {c["cell_id"]: c for c in good["cells"]}
    for row in rows:
        cell = by_id[row["cell_id"]]
        assert float(row["value"]) == cell["metrics"][cell["primary_metric"]]
        assert row["name"] == "lab-a" and row["checksum"] == good["checksum"]
    md = (tmp_path / "results" / "leaderboard.md").read_text(encoding="utf-8")
    assert "## mini / mini_gsm" in md and "| 1 | lab-a |" in md
    kept = json.loads((tmp_path / "results" / "submissions" / "lab-a.json").read_text(encoding="utf-8"))
    assert kept == good


def test_submission_binds_each_cell_to_its_config_hash(good):
    assert good["schema"] == "prt-bench/submission/1" and good["suite"] == "mini"
    for cell in good["cells"]:
        assert cell["config_hash"] == cell["cell_id"] == config_hash(cell["config"])
        assert "alias" not in cell["metrics"]  # lm-eval's strings are not results
        assert "n_samples" not in cell["metrics"] and "sample_len" not in cell["metrics"]  # bookkeeping
    vision = [c for c in good["cells"] if c["modality"] == "vision"]
    assert vision[0]["n_samples"] == 1000 and vision[0]["metrics"]["nll,none"] > 0
    assert good["checksum"].startswith("sha256:") and good["environment"]["device"] == "cpu"


def _edit(sub, fn, reseal=True):
    sub = copy.deepcopy(sub)
    fn(sub)
    return seal(sub) if reseal else sub


def _set_metric(value):
    def fn(s):
        c = s["cells"][0]
        c["metrics"][c["primary_metric"]] = value
    return fn


BAD = {
    "unknown schema": (lambda s: s.update(schema="prt-bench/submission/0"), True, "unknown schema"),
    "unknown suite": (lambda s: s.update(suite="imaginary"), True, "unknown suite 'imaginary'"),
    "metric edited after packing": (_set_metric(0.99), False, "wrong checksum"),
    "config edited, hash kept": (lambda s: s["cells"][0]["config"].update(seed=7), True,
                                 "does not match its config"),
    "result relabelled": (lambda s: s["cells"][0].update(method="ft_target"), True, "but its config says"),
    "name escapes the output folder": (lambda s: s.update(name="../../etc/evil"), True,
                                       "would reach outside its folder"),
    "accuracy above 1": (_set_metric(1.5), True, "outside [0, 1]"),
    "negative accuracy": (_set_metric(-0.1), True, "outside [0, 1]"),
    "cell twice": (lambda s: s["cells"].append(copy.deepcopy(s["cells"][0])), True, "appears twice"),
    "cell id not a hash": (lambda s: s["cells"][0].update(cell_id="../x"), True, "is not a 16-hex config hash"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_submission_is_rejected_with_its_reason(tmp_path, good, kind):
    fn, reseal, reason = BAD[kind]
    _write(tmp_path / "subs", "bad.json", _edit(good, fn, reseal))
    reasons = _only_rejection(tmp_path / "subs", tmp_path)
    assert any(reason in r for r in reasons), reasons


def test_malformed_json_is_rejected(tmp_path):
    _write(tmp_path / "subs", "broken.json", '{"schema": "prt-bench/submission/1", "cells": [')
    reasons = _only_rejection(tmp_path / "subs", tmp_path)
    assert reasons[0].startswith("malformed JSON")


def test_nan_metric_is_rejected(tmp_path, good):
    text = json.dumps(_edit(good, _set_metric(float("nan")), reseal=False))  # Python writes a bare NaN
    assert "NaN" in text
    _write(tmp_path / "subs", "nan.json", text)
    reasons = _only_rejection(tmp_path / "subs", tmp_path)
    assert any("NaN" in r for r in reasons), reasons


def test_duplicated_submission_is_rejected_even_under_another_name(tmp_path, good):
    _write(tmp_path / "subs", "a.json", good)
    _write(tmp_path / "subs", "b.json", _edit(good, lambda s: s.update(name="lab-b", created="later")))
    out = build_leaderboard(tmp_path / "subs", tmp_path / "out")
    assert [f for f, _ in out.accepted] == ["a.json"]
    assert out.rejected == [("b.json", ["duplicate of a.json (same cells and metrics)"])]


def test_symlink_out_of_the_submissions_folder_is_rejected(tmp_path, good):
    outside = _write(tmp_path / "elsewhere", "x.json", good)
    (tmp_path / "subs").mkdir()
    os.symlink(outside, tmp_path / "subs" / "link.json")
    reasons = _only_rejection(tmp_path / "subs", tmp_path)
    assert "escapes the submissions folder" in reasons[0]


def test_rejections_do_not_stop_the_others_and_are_listed(tmp_path, good):
    subs = tmp_path / "subs"
    _write(subs, "1-broken.json", "not json")
    _write(subs, "2-good.json", good)
    _write(subs, "3-absurd.json", _edit(good, _set_metric(7.0)))
    run = CliRunner().invoke(app, ["leaderboard", str(subs), "--out-dir", str(tmp_path / "results"), "--strict"])
    assert run.exit_code == 1  # --strict: some were rejected
    assert "2 rejected" in run.output and "malformed JSON" in run.output
    md = (tmp_path / "results" / "leaderboard.md").read_text(encoding="utf-8")
    assert "1 submission(s) accepted, 2 rejected" in md
    assert "| 1-broken.json | malformed JSON" in md and "| 3-absurd.json |" in md and "outside [0, 1]" in md


def test_submit_command_writes_a_submission_that_validates(tmp_path):
    out = tmp_path / "sub.json"
    run = CliRunner().invoke(app, ["submit", str(FIXTURE), "--out", str(out), "--name", "cli-run"])
    assert run.exit_code == 0, run.output
    sub = json.loads(out.read_text(encoding="utf-8"))
    assert sub["name"] == "cli-run" and len(sub["cells"]) == 84


def test_submit_refuses_a_folder_without_cells(tmp_path):
    with pytest.raises(SubmissionError, match="no cells/ folder"):
        pack_submission(tmp_path)
