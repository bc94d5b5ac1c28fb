"""Leaderboard submissions, verified against the suite they name: a real smoke run packed, every
way of altering it refused or listed apart with its reason, and sampled cells re-run."""

from __future__ import annotations

import base64
import copy
import csv
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prt_bench.cli import app
from prt_bench.io import config_hash
from prt_bench.report.leaderboard import (SCHEMA_FILE, SubmissionError, build_leaderboard, pack_submission,
                                          schema_problems, seal)
from prt_bench.suite.plan import expand
from prt_bench.suite.schema import load_suite


@pytest.fixture(scope="module")
def smoke(smoke_run, tmp_path_factory) -> dict[str, Path]:
    """A copy of the session's smoke run (tests/conftest.py)."""
    import shutil

    root, summary, cache = smoke_run
    assert summary.failed == {}
    results = tmp_path_factory.mktemp("leaderboard") / "smoke"
    shutil.copytree(root / "results" / "smoke", results)
    return {"results": results, "cache": cache}


@pytest.fixture(scope="module")
def good(smoke):
    return pack_submission(smoke["results"], name="lab-a")


def _write(folder: Path, name: str, obj) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return p


def _edit(sub, fn, reseal=True):
    sub = copy.deepcopy(sub)
    fn(sub)
    return seal(sub) if reseal else sub


def _cell(sub, method, modality="lm"):
    """The submission's main cell of ``method`` (at the trained λ, not one of the λ sweep's)."""
    return next(c for c in sub["cells"] if c["method"] == method and c["modality"] == modality
                and c["config"]["lam"] == 1.0)


def test_a_genuine_submission_verifies_and_ranks(tmp_path, good):
    expected = {c.cell_id for c in expand(load_suite("smoke")) if c.kind == "eval"}
    assert {c["cell_id"] for c in good["cells"]} == expected
    assert good["schema"] == "prt-bench/submission/2" and schema_problems(good) == []
    assert good["variant"]["name"] == "prt-bench"
    subs = tmp_path / "subs"
    _write(subs, "lab-a.json", good)
    out = build_leaderboard(subs, tmp_path / "results")
    assert [f for f, _ in out.accepted] == ["lab-a.json"] and not out.rejected and not out.apart
    with open(tmp_path / "results" / "leaderboard.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(good["cells"])
    md = (tmp_path / "results" / "leaderboard.md").read_text(encoding="utf-8")
    assert "| 1 | lab-a | prt-bench |" in md and "1 submission(s) ranked, 0 listed apart, 0 rejected" in md
    assert json.loads((tmp_path / "results" / "submissions" / "lab-a.json").read_text(encoding="utf-8")) == good


def test_the_published_json_schema_is_a_valid_schema():
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def _with_limit(s):
    c = _cell(s, "prt")
    c["config"]["task_config"]["limit"] = 1  # the suite scores 2 problems
    c["cell_id"] = config_hash(c["config"])


def _other_base(s):
    c = _cell(s, "zeroshot")
    c["config"]["target"]["tiny"]["seed"] = 5  # another model under the same name
    c["cell_id"] = config_hash(c["config"])


def _swap_samples(s):
    """A cell given another cell's per-sample records (and their hash): its metrics no longer come back."""
    prt, base = _cell(s, "prt", "vision"), _cell(s, "zeroshot", "vision")
    assert prt["metrics"]["nll,none"] != base["metrics"]["nll,none"]
    prt["samples"] = copy.deepcopy(base["samples"])


def _edited_samples(s):
    c = _cell(s, "zeroshot", "vision")
    import gzip

    lines = gzip.decompress(base64.b64decode(c["samples"]["gzip_base64"])).decode().splitlines()
    row = json.loads(lines[1])
    row["pred"] = (row["pred"] + 1) % 10
    lines[1] = json.dumps(row)
    c["samples"]["gzip_base64"] = base64.b64encode(gzip.compress(("\n".join(lines) + "\n").encode())).decode()


BAD = {
    "unknown schema": (lambda s: s.update(schema="prt-bench/submission/1"), True, "unknown schema"),
    "unknown suite": (lambda s: s.update(suite="imaginary"), True, "suite 'imaginary' cannot be expanded here"),
    "another suite's name": (lambda s: s.update(suite="mini"), True, "not a cell of suite 'mini'"),
    "metric edited after packing": (lambda s: _cell(s, "prt")["metrics"].update({"exact_match,strict-match": 0.99}),
                                    False, "wrong checksum"),
    "metric edited and resealed": (lambda s: _cell(s, "prt")["metrics"].update({"exact_match,strict-match": 0.99}),
                                   True, "exact_match,strict-match: recorded 0.99, recomputed"),
    "samples that disagree with the metrics": (_swap_samples, True, "recomputed"),
    "samples edited, hash kept": (_edited_samples, True, "the samples do not hash to their sha256"),
    "a limit on the test set": (_with_limit, True, "differs in task_config.limit 1 (the suite's: 2)"),
    "another base": (_other_base, True, "differs in target.tiny.seed 5 (the suite's: 0)"),
    "config edited, id kept": (lambda s: _cell(s, "prt")["config"].update(seed=7), True, "hashes to"),
    "result relabelled": (lambda s: _cell(s, "prt").update(target="tiny-qwen-s"), True, "target is 'tiny-qwen-s' "
                          "but the suite's cell says"),
    "primary metric switched": (lambda s: _cell(s, "prt").update(primary_metric="exact_match,flexible-extract"),
                                True, "the suite's is 'exact_match,strict-match'"),
    "unknown field": (lambda s: _cell(s, "prt").update(note="trust me"), True, "Additional properties"),
    "unknown top-level field": (lambda s: s.update(rank=1), True, "Additional properties"),
    "variant undeclared": (lambda s: s.pop("variant"), True, "'variant' is a required property"),
    "name escapes the output folder": (lambda s: s.update(name="../../etc/evil"), True, "name"),
    "cell twice": (lambda s: s["cells"].append(copy.deepcopy(s["cells"][0])), True, "appears 2 times"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_an_altered_submission_is_rejected_with_its_reason(tmp_path, good, kind):
    fn, reseal, reason = BAD[kind]
    _write(tmp_path / "subs", "bad.json", _edit(good, fn, reseal))
    out = build_leaderboard(tmp_path / "subs", tmp_path / "out")
    assert not out.accepted and not out.apart and len(out.rejected) == 1, (out.apart, out.rejected)
    reasons = out.rejected[0][1]
    assert any(reason in r for r in reasons), reasons


def test_a_submission_missing_a_cell_is_listed_apart_not_ranked(tmp_path, good):
    dropped = _cell(good, "prt")
    partial = _edit(good, lambda s: s.update(name="lab-b", cells=[c for c in s["cells"] if c is not _cell(s, "prt")]))
    _write(tmp_path / "subs", "a.json", good)
    _write(tmp_path / "subs", "b.json", partial)
    out = build_leaderboard(tmp_path / "subs", tmp_path / "out")
    assert [f for f, _ in out.accepted] == ["a.json"] and not out.rejected
    (fname, sub, why), = out.apart
    assert fname == "b.json" and why[0].startswith("incomplete: 1 of the suite's")
    assert f"prt {dropped['source']} -> {dropped['target']}" in why[0]
    md = (tmp_path / "out" / "leaderboard.md").read_text(encoding="utf-8")
    assert "| b.json | lab-b | incomplete: 1 of" in md


@pytest.mark.parametrize("order", ["forged first", "forged last"])
def test_a_second_submission_claiming_a_name_takes_nothing(tmp_path, good, order):
    forged = _edit(good, lambda s: s.update(cells=[c for c in s["cells"] if c is not _cell(s, "eft")]))
    names = ("0-forged.json", "1-genuine.json") if order == "forged first" else ("1-forged.json", "0-genuine.json")
    _write(tmp_path / "subs", names[0], forged)
    _write(tmp_path / "subs", names[1], good)
    out = build_leaderboard(tmp_path / "subs", tmp_path / "out")
    assert not out.accepted and not out.rejected
    assert sorted(f for f, _, _ in out.apart) == sorted(names)
    assert all(any("is also claimed by" in w for w in why) for _, _, why in out.apart)


def test_a_duplicate_under_another_name_is_rejected(tmp_path, good):
    _write(tmp_path / "subs", "a.json", good)
    _write(tmp_path / "subs", "b.json", _edit(good, lambda s: s.update(name="lab-b", created="later")))
    out = build_leaderboard(tmp_path / "subs", tmp_path / "out")
    assert [f for f, _ in out.accepted] == ["a.json"]
    assert out.rejected == [("b.json", ["duplicate of a.json (same cells and metrics)"])]


def test_malformed_json_nan_and_links_out_are_rejected(tmp_path, good):
    subs = tmp_path / "subs"
    _write(subs, "1-broken.json", '{"schema": "prt-bench/submission/2", "cells": [')
    text = json.dumps(_edit(good, lambda s: _cell(s, "prt")["metrics"].update({"exact_match,strict-match":
                                                                                float("nan")})))
    _write(subs, "2-nan.json", text)
    outside = _write(tmp_path / "elsewhere", "x.json", good)
    os.symlink(outside, subs / "3-link.json")
    run = CliRunner().invoke(app, ["leaderboard", "build", str(subs), "--out-dir", str(tmp_path / "out"), "--strict"])
    assert run.exit_code == 1
    out = build_leaderboard(subs, tmp_path / "out")
    reasons = dict(out.rejected)
    assert reasons["1-broken.json"][0].startswith("malformed JSON")
    assert any("nan" in r.lower() for r in reasons["2-nan.json"])
    assert "escapes the submissions folder" in reasons["3-link.json"][0]


def test_submit_declares_the_variant_and_verify_reruns_sampled_cells(tmp_path, smoke):
    out = tmp_path / "sub.json"
    run = CliRunner().invoke(app, ["submit", str(smoke["results"]), "--out", str(out), "--name", "cli-run",
                                   "--variant", "my-prt", "--variant-description", "PRT with my loss"])
    assert run.exit_code == 0, run.output
    sub = json.loads(out.read_text(encoding="utf-8"))
    assert sub["variant"] == {"name": "my-prt", "description": "PRT with my loss"}
    run = CliRunner().invoke(app, ["leaderboard", "verify", str(out), "--cells", "3", "--work", str(tmp_path / "w"),
                                   "--cache", str(smoke["cache"])])
    assert run.exit_code == 0, run.output
    assert "3 of 3 re-run cells reproduce sub.json" in " ".join(run.output.split())
    # a submission whose numbers were not produced by its cells' recipe does not verify
    bad = copy.deepcopy(sub)
    cell = next(c for c in bad["cells"] if c["method"] == "zeroshot" and c["modality"] == "vision")
    blob = base64.b64decode(cell["samples"]["gzip_base64"])
    import gzip
    import hashlib

    lines = gzip.decompress(blob).decode().splitlines()
    rows = [json.loads(x) for x in lines[1:]]
    for r in rows:  # a consistent forgery: every prediction right, metrics and hash to match
        r["pred"] = r["label"]
        r["top5"] = True
    from prt_bench.suite import samples as S

    header = {k: v for k, v in json.loads(lines[0]).items() if k != "schema"}
    new = S.encode(header, rows)
    cell["samples"] = {"sha256": hashlib.sha256(new).hexdigest(), "gzip_base64": base64.b64encode(new).decode()}
    from prt_bench.suite import modalities

    fresh = modalities.get("vision").rescore(header, rows, {})
    cell["metrics"] = {**cell["metrics"], **{k: v for k, v in fresh.items() if k in cell["metrics"]}}
    forged = _write(tmp_path / "only", "forged.json", seal(bad))
    assert build_leaderboard(tmp_path / "only", tmp_path / "lb").accepted, "a consistent forgery passes static checks"
    # re-running that cell, named by a prefix of its id as the report prints it, finds it
    run = CliRunner().invoke(app, ["leaderboard", "verify", str(forged), "--cell", cell["cell_id"][:12],
                                   "--work", str(tmp_path / "w"), "--cache", str(smoke["cache"])])
    assert run.exit_code == 1, run.output
    assert f"differs {cell['cell_id']}" in " ".join(run.output.split())
    assert "0 of 1 re-run cells reproduce" in " ".join(run.output.split())
    # every image right where the recipe gets a few: far beyond the error, even for another CPU's bits
    run = CliRunner().invoke(app, ["leaderboard", "verify", str(forged), "--cell", cell["cell_id"], "--within-error",
                                   "--work", str(tmp_path / "w"), "--cache", str(smoke["cache"])])
    assert run.exit_code == 1 and "beyond its sampling error" in " ".join(run.output.split()), run.output


def test_verify_re_runs_the_named_cells_else_a_seeded_sample_else_all(tmp_path):
    from prt_bench.report.leaderboard import SubmissionError, chosen_cells

    sub = {"cells": [{"cell_id": cid} for cid in ("ab12", "ab34", "cd56", "ef78", "gh90")]}
    assert chosen_cells(sub, None) == ["ab12", "ab34", "cd56", "ef78", "gh90"]
    assert chosen_cells(sub, 9) == chosen_cells(sub, None)
    three = chosen_cells(sub, 3, seed=1)
    assert len(three) == 3 and set(three) < set(chosen_cells(sub, None)) and three == chosen_cells(sub, 3, seed=1)
    assert {tuple(chosen_cells(sub, 2, seed=s)) for s in range(20)} != {tuple(chosen_cells(sub, 2, seed=0))}
    assert chosen_cells(sub, 3, named=["cd", "ab34", "cd56"]) == ["ab34", "cd56"]  # by prefix; the sample is not asked
    with pytest.raises(SubmissionError, match="names 2 cells"):
        chosen_cells(sub, named=["ab"])
    with pytest.raises(SubmissionError, match="names no cell"):
        chosen_cells(sub, named=["zz"])
    with pytest.raises(SubmissionError, match="at least 1"):
        chosen_cells(sub, 0)
    out = tmp_path / "s.json"
    out.write_text("{}")
    run = CliRunner().invoke(app, ["leaderboard", "verify", str(out), "--all", "--cell", "ab"])
    assert run.exit_code == 2 and "--cell and --all" in " ".join(run.output.split()), run.output


def test_a_re_run_cell_agrees_within_its_error_by_its_primary_metric():
    from prt_bench.report.leaderboard import Reproduction
    from prt_bench.suite.reference import Z95, error_distance

    def rec(value):
        return {"kind": "eval", "status": "done", "task": "t", "primary_metric": "acc1,none",
                "results": {"t": {"acc1,none": value, "n_samples": 2000}}}

    z = error_distance(rec(0.800), rec(0.8015))  # 3 images of 2,000: another CPU's rounding
    assert 0 < z < Z95 and Reproduction("c", "l", False, ["acc1"], z).within_error()
    far = error_distance(rec(0.800), rec(0.900))
    assert far > Z95 and not Reproduction("c", "l", False, ["acc1"], far).within_error()
    assert not Reproduction("c", "l", False, ["acc1"], None).within_error()  # no error to judge by
    assert Reproduction("c", "l", True, [], None).within_error()


def test_submit_refuses_a_folder_without_cells(tmp_path):
    with pytest.raises(SubmissionError, match="no cells/ folder"):
        pack_submission(tmp_path)
