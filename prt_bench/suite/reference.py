"""The committed reference results, and cell-by-cell comparison of two results folders.

The reference of a suite lives in ``results/reference/<suite>/`` (cells, table, profile) and
is never a run's results folder: runs write to ``results/local/<suite>/`` (git-ignored) and are
then compared with it, so a fresh clone *reproduces* the reference instead of re-reading it.
Only ``prt-bench reference update`` changes the reference.

Two records of a cell (same id, so same config) are compared on everything under
``results`` and on the hash of their per-sample records: *equal* when every value is bitwise the same, *within* when every number is
within ``tolerance`` (absolute), else *different*; cells present on one side only are listed
as such.  Timings and environments are not compared (they are the machine's, not the recipe's).

Bitwise equality holds on one machine at a fixed thread count; on another CPU (another kernel
build, other vector instructions: the cells' ``environment.cpu_capability``) float reductions
round differently, a fine-tuned model comes out a little different and its scores move.  So an
evaluation cell whose primary metric moved is also judged against its error: it *agrees* when
|a − b| ≤ ``Z95`` · √(se_a² + se_b²), each side's standard error as the report takes it (the
evaluator's, else binomial from the items), i.e. the two measurements are within their 95 %
sampling error of each other.  A run *agrees with the reference* when every cell is on both sides
and no evaluation cell moved beyond its error; ``prt-bench run`` exits 1 when it does not.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prt_bench.io import COMPARISON_SCHEMA, REPO_ROOT, atomic_write_json, read_json
from prt_bench.suite.samples import samples_path

REFERENCE_ROOT = REPO_ROOT / "results" / "reference"
DEFAULT_TOLERANCE = 1e-6  # float noise; a metric that moves by one test item is "different"
Z95 = 1.959964  # two-sided 95 % of a normal: the error a moved primary metric is judged against
STATUSES = ("equal", "within", "different", "only_a", "only_b")


def reference_dir(suite: str) -> Path:
    return REFERENCE_ROOT / suite


def inside_reference(path: str | Path) -> bool:
    p, root = Path(path).resolve(), REFERENCE_ROOT.resolve()
    return p == root or root in p.parents


@dataclass
class CellDiff:
    cell_id: str
    label: str
    status: str                      # one of STATUSES
    primary_metric: str | None = None
    a: Any = None                    # the primary metric's value on each side
    b: Any = None
    max_abs_diff: float = 0.0        # over every number under `results` (text that differs: in keys only)
    keys: list[str] = field(default_factory=list)   # what differs (beyond the tolerance)
    z: float | None = None           # an eval cell's |a − b| / √(se_a² + se_b²); None: not judged
    kind: str = "eval"               # eval or train (a train cell is judged by its evaluations)


@dataclass
class Comparison:
    a: str
    b: str
    tolerance: float
    cells: list[CellDiff]
    cpu: dict[str, list[str]] = field(default_factory=dict)  # side -> the CPU capabilities its cells record

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.cells) for s in STATUSES}

    def largest(self, n: int = 5) -> list[CellDiff]:
        moved = [c for c in self.cells if c.status in ("within", "different")]
        return sorted(moved, key=lambda c: -c.max_abs_diff)[:n]

    @property
    def reproduced(self) -> bool:
        counts = self.counts()
        return counts["different"] == counts["only_a"] == counts["only_b"] == 0

    def beyond_error(self) -> list[CellDiff]:
        """Evaluation cells whose primary metric moved by more than ``Z95`` standard errors (or
        whose error is unknown); train cells are judged by the evaluations they feed."""
        return [c for c in self.cells if c.kind == "eval" and c.status == "different" and c.z != 0.0
                and (c.z is None or c.z > Z95)]

    @property
    def agrees(self) -> bool:
        """Every cell on both sides and every evaluation within its sampling error of the other."""
        counts = self.counts()
        return counts["only_a"] == counts["only_b"] == 0 and not self.beyond_error()

    def verdict(self) -> str:
        if self.reproduced:
            return "reproduces the reference bitwise"
        if self.agrees:
            return "agrees with the reference within sampling error (not bitwise: see below)"
        return "DIFFERS from the reference"

    def to_json(self) -> dict[str, Any]:
        return {"schema": COMPARISON_SCHEMA, "a": self.a, "b": self.b, "tolerance": self.tolerance,
                "counts": self.counts(), "reproduced": self.reproduced, "agrees": self.agrees, "z95": Z95,
                "beyond_error": [c.cell_id for c in self.beyond_error()], "cpu": self.cpu,
                "largest": [c.cell_id for c in self.largest()], "cells": [asdict(c) for c in self.cells]}

    def summary(self, name_a: str = "A", name_b: str = "B") -> list[str]:
        k = self.counts()
        lines = [f"{len(self.cells)} cells compared ({name_a}: {self.a}, {name_b}: {self.b}): "
                 f"{k['equal']} bitwise equal, {k['within']} within {self.tolerance:g}, {k['different']} different, "
                 f"{k['only_a']} only in {name_a}, {k['only_b']} only in {name_b}"]
        beyond = self.beyond_error()
        moved = [c for c in self.cells if c.z] + [c for c in beyond if c.z is None]
        if moved:
            lines.append(f"evaluation cells whose primary metric moved: {len(moved)}; "
                         f"beyond its 95 % sampling error (|Δ| > {Z95:.2f} σ): {len(beyond)}")
        cpu_a, cpu_b = self.cpu.get("a", []), self.cpu.get("b", [])
        if cpu_a and cpu_b and cpu_a != cpu_b:
            lines.append(f"CPU vector instructions: {name_a} {', '.join(cpu_a)}, {name_b} {', '.join(cpu_b)}: "
                         "bitwise equality is not expected")
        for c in self.largest():
            error = "" if c.z is None else f", {c.z:.1f} σ"
            lines.append(f"  {c.status:<9} {c.cell_id}  {c.label}: {c.primary_metric} {_fmt(c.a)} vs {_fmt(c.b)} "
                         f"(largest difference {c.max_abs_diff:.4g} in {', '.join(c.keys[:3]) or '-'}{error})")
        for c in beyond[:5]:
            if c not in self.largest():
                lines.append(f"  beyond    {c.cell_id}  {c.label}: {c.primary_metric} {_fmt(c.a)} vs {_fmt(c.b)} "
                             f"({'error unknown' if c.z is None else f'{c.z:.1f} σ'})")
        for c in [c for c in self.cells if c.status in ("only_a", "only_b")][:5]:
            lines.append(f"  {c.status:<9} {c.cell_id}  {c.label}")
        return lines


def label(record: dict[str, Any]) -> str:
    pair = f"{record['source']}->{record['target']}" if record.get("source") else str(record.get("target"))
    lam = (record.get("config") or {}).get("lam") if record.get("method") == "prt" else None
    return (f"{record.get('kind')} {record.get('modality')} {record.get('task')} {record.get('method')} {pair} "
            f"alpha={record.get('alpha')}" + (f" lam={lam:g}" if isinstance(lam, (int, float)) else "")
            + f" seed={record.get('seed')}")


def read_records(results: str | Path) -> dict[str, dict[str, Any]]:
    """{cell id: record} of the finished cells of a results folder (``<results>/cells/*.json``)."""
    cells = Path(results) / "cells"
    if not cells.is_dir():
        raise FileNotFoundError(f"{results} has no cells/ folder: not a results folder of a suite")
    out = {}
    for p in sorted(cells.glob("*.json")):
        try:
            record = read_json(p)
        except ValueError as e:
            raise ValueError(f"{p}: not valid JSON ({e})") from e
        if isinstance(record, dict) and record.get("status") == "done":
            out[p.stem] = record
    return out


def compare(a: str | Path, b: str | Path, tolerance: float = DEFAULT_TOLERANCE,
            only: set[str] | None = None) -> Comparison:
    """Every cell of two results folders (with ``only``, those of its cell ids), side by side (see
    the module's docstring)."""
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    ra, rb = read_records(a), read_records(b)
    if only is not None:
        ra, rb = ({k: v for k, v in r.items() if k in only} for r in (ra, rb))
    cells = []
    for cell_id in sorted(set(ra) | set(rb)):
        if cell_id not in rb or cell_id not in ra:
            record = ra.get(cell_id) or rb[cell_id]
            cells.append(CellDiff(cell_id, label(record), "only_a" if cell_id in ra else "only_b",
                                  record.get("primary_metric"), kind=record.get("kind", "eval")))
            continue
        cells.append(_compare_cell(cell_id, ra[cell_id], rb[cell_id], tolerance))
    cpu = {side: sorted({str((r.get("environment") or {}).get("cpu_capability")) for r in records.values()
                         if (r.get("environment") or {}).get("cpu_capability")})
           for side, records in (("a", ra), ("b", rb))}
    return Comparison(str(a), str(b), tolerance, cells, cpu)


def _compare_cell(cell_id: str, x: dict[str, Any], y: dict[str, Any], tolerance: float) -> CellDiff:
    fx, fy = _leaves(x.get("results", {})), _leaves(y.get("results", {}))
    for key, record in (("samples/sha256", x), ("samples/sha256", y)):  # the items behind the metrics
        if isinstance(record.get("samples"), dict):
            (fx if record is x else fy)[key] = record["samples"].get("sha256")
    metric = x.get("primary_metric")
    diff = CellDiff(cell_id, label(x), "equal", metric, _primary(x), _primary(y))
    for key in sorted(set(fx) | set(fy)):
        u, v = fx.get(key), fy.get(key)
        if _same(u, v):
            continue
        if _number(u) and _number(v):
            gap = abs(u - v) if math.isfinite(u) and math.isfinite(v) else math.inf
            diff.max_abs_diff = max(diff.max_abs_diff, gap)
        else:
            gap = math.inf  # missing on one side, or text (the samples' hash) that differs
        if gap > tolerance:
            diff.keys.append(key)
        if diff.status == "equal":
            diff.status = "within"
    if diff.keys:
        diff.status = "different"
    diff.kind = x.get("kind", "eval")
    if diff.kind == "eval":
        diff.z = error_distance(x, y)
    return diff


def error_distance(x: dict[str, Any], y: dict[str, Any]) -> float | None:
    """|a − b| / √(se_a² + se_b²) of two records' primary metric (0 when equal); None when a side
    has no primary value or no standard error."""
    from prt_bench.report.results import cell_row

    rx, ry = cell_row(x), cell_row(y)
    if rx is None or ry is None:
        return None
    if rx["value"] == ry["value"]:
        return 0.0
    se = math.sqrt(sum(r["stderr"] ** 2 for r in (rx, ry) if r["stderr"] is not None))
    if se == 0.0 or rx["stderr"] is None or ry["stderr"] is None:
        return None
    return abs(rx["value"] - ry["value"]) / se


def _primary(record: dict[str, Any]) -> Any:
    metric = record.get("primary_metric")
    return (record.get("results", {}).get(record.get("task"), {}) or {}).get(metric)


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_leaves(v, f"{prefix}/{k}" if prefix else str(k)))
        return out
    return {prefix: tree}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _same(u: Any, v: Any) -> bool:
    if _number(u) and _number(v) and math.isnan(u) and math.isnan(v):
        return True
    return type(u) is type(v) and u == v


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if _number(v) else str(v)


def write_comparison(comparison: Comparison, out: str | Path) -> Path:
    return atomic_write_json(out, comparison.to_json())


def update(suite: str, results: str | Path, report: bool = True) -> Path:
    """Make a results folder the reference of `suite`: copy its cells, table and profile into
    ``results/reference/<suite>/`` (replacing what was there) and rebuild ``reports/<suite>.pdf``
    from them.  The deliberate, explicit way the reference changes."""
    src = Path(results)
    records = read_records(src)
    if not records:
        raise ValueError(f"{src} holds no finished cells")
    suites = {r.get("suite") for r in records.values()}
    if suites != {suite}:
        raise ValueError(f"{src} holds cells of suites {sorted(map(str, suites))}, not only of {suite!r}")
    if inside_reference(src):
        raise ValueError(f"{src} is the reference already")
    dest = reference_dir(suite)
    staging = dest.with_name(f".{suite}.update")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "cells").mkdir(parents=True)
    for cell_id in records:
        shutil.copy2(src / "cells" / f"{cell_id}.json", staging / "cells" / f"{cell_id}.json")
        samples = samples_path(src, cell_id)
        if samples.is_file():
            shutil.copy2(samples, staging / "cells" / samples.name)
    for name in ("table.csv", "profile"):
        if (src / name).is_dir():
            shutil.copytree(src / name, staging / name)
        elif (src / name).is_file():
            shutil.copy2(src / name, staging / name)
    old = dest.with_name(f".{suite}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    if report:
        from prt_bench.report import build_report

        import os

        # relative to here (the repository root, usually), so the report names no machine's path
        build_report(Path(os.path.relpath(dest)), REPO_ROOT / "reports" / f"{suite}.pdf")
    return dest
