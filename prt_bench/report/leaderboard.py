"""Leaderboard submissions: pack a results folder, verify submissions, rank the complete ones.

A submission (schema ``prt-bench/submission/2``, published as a JSON Schema in
``docs/submission.schema.json``) is one JSON file: the suite it ran, a name, a declared
``variant`` (what it changed -- the one part that is the submitter's), and every evaluation
cell with its config, metrics and per-sample records (the cell's samples file, base64)::

    {"schema": "prt-bench/submission/2", "suite": "mini", "name": "my-lab-run1", "created": "...",
     "variant": {"name": "reference implementation", "description": "..."},
     "environment": {...}, "git_commits": [...],
     "cells": [{"cell_id", "config", "modality", "task", "scenario", "method", "source", "target",
                "alpha", "seed", "primary_metric", "metrics": {...},
                "samples": {"sha256", "gzip_base64"}}, ...],
     "checksum": "sha256:<hex>"}

Verification, in words.  A submission is checked against the **expansion of the suite it
names**, as this repository expands it (``prt_bench.suite.plan.expand``), not against itself:

- its shape is the JSON Schema's (no unknown fields anywhere); its name is a plain name;
- every cell is a cell of the expansion: same id, a config that hashes to it, and the
  expansion's labels (task, method, source, target, α, seed, scenario, modality) and primary
  metric.  A cell whose config differs (a ``limit``, another base, another test split) is not
  in the expansion; the reason names the keys that differ from the suite's cell of the same
  labels;
- every metric is recomputed from the cell's samples by its modality (``rescore``) and must
  equal the submitted one exactly; the samples must hash to their stated sha256;
- ``checksum`` (sha256 of the canonical JSON without it) catches accidents;
- **complete**: every evaluation cell of the expansion is there.  A submission that passes
  every check but lacks cells is *listed apart* with what it lacks, never ranked with complete
  ones; one that fails a check is *rejected* with its reasons;
- two different submissions claiming one name are both listed apart (the file names' order
  decides nothing); the same cells and metrics twice are a duplicate.

What verification cannot see is a forger who produces consistent samples and metrics of their
own: ``prt-bench leaderboard verify SUBMISSION --cells N`` re-runs N sampled cells here and
compares them with the submission, metrics and samples' hashes alike.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prt_bench.io import (CELL_SCHEMA, REPO_ROOT, SUBMISSION_SCHEMA, atomic_write_json, atomic_write_text,
                          config_hash, name_problem, read_json)

SCHEMA_FILE = REPO_ROOT / "docs" / "submission.schema.json"
MAX_BYTES = 64 * 1024 * 1024
IDENTITY = ("modality", "task", "scenario", "method", "source", "target", "alpha", "seed")
DEFAULT_VARIANT = {"name": "prt-bench", "description": "the methods as prt-bench implements them"}
VALID, INCOMPLETE, INVALID = "valid", "incomplete", "invalid"


class SubmissionError(ValueError):
    """A submission cannot be packed or is invalid; the message says why."""


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def checksum(submission: dict[str, Any]) -> str:
    body = {k: v for k, v in submission.items() if k != "checksum"}
    try:
        return "sha256:" + hashlib.sha256(canonical(body)).hexdigest()
    except ValueError:  # NaN/inf cannot be canonical JSON
        return "sha256:<not computable: NaN or infinity in the submission>"


def seal(submission: dict[str, Any]) -> dict[str, Any]:
    """Set the checksum of a submission (after every other field is final)."""
    submission = dict(submission)
    submission["checksum"] = checksum(submission)
    return submission


def _safe_name(text: str) -> str:
    import re

    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-_")
    return name[:80] or "submission"


def pack_submission(results_dir: str | os.PathLike, name: str | None = None,
                    variant: dict[str, str] | None = None) -> dict[str, Any]:
    """A sealed submission of every finished evaluation cell in a results folder, with its samples."""
    from prt_bench.suite import samples

    root = Path(results_dir)
    cells_dir = root / "cells"
    if not cells_dir.is_dir():
        raise SubmissionError(f"{root} has no cells/ folder: is it a results folder (results/<suite>)?")
    cells, envs, suites = [], [], set()
    for path in sorted(cells_dir.glob("*.json")):
        try:
            cell = read_json(path)
        except (OSError, ValueError) as e:
            raise SubmissionError(f"{path} is not readable JSON: {e}") from e
        if not isinstance(cell, dict) or cell.get("schema") != CELL_SCHEMA:
            raise SubmissionError(f"{path}: schema is not {CELL_SCHEMA}")
        if cell.get("kind", "eval") != "eval" or cell.get("status", "done") != "done":
            continue
        metrics = (cell.get("results") or {}).get(cell.get("task"))
        if not isinstance(metrics, dict):
            raise SubmissionError(f"{path}: results has no entry for its task {cell.get('task')!r}")
        try:
            samples.read(root, cell)  # checks the hash
        except samples.SamplesError as e:
            raise SubmissionError(f"{path}: {e}") from None
        blob = samples.samples_path(root, cell["cell_id"]).read_bytes()
        suites.add(cell.get("suite"))
        envs.append({k: v for k, v in (cell.get("environment") or {}).items() if k != "models"})
        cells.append({
            **{k: cell.get(k) for k in IDENTITY}, "cell_id": cell.get("cell_id"), "config": cell.get("config"),
            "primary_metric": cell.get("primary_metric"),
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)},
            "samples": {"sha256": hashlib.sha256(blob).hexdigest(), "gzip_base64": base64.b64encode(blob).decode()},
        })
    if not cells:
        raise SubmissionError(f"{root} has no finished evaluation cells to submit")
    if len(suites) != 1:
        raise SubmissionError(f"{root} mixes suites {sorted(map(str, suites))}; submit one suite at a time")
    env_counts = Counter(json.dumps(e, sort_keys=True) for e in envs)
    submission = seal({
        "schema": SUBMISSION_SCHEMA,
        "suite": suites.pop(),
        "name": name if name is not None else _safe_name(root.resolve().name),
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "variant": dict(variant or DEFAULT_VARIANT),
        "environment": json.loads(env_counts.most_common(1)[0][0]),
        "git_commits": sorted({e.get("git_commit") for e in envs if e.get("git_commit")}),
        "cells": sorted(cells, key=lambda c: str(c["cell_id"])),
    })
    status, problems = verify_against_suite(submission)
    if status == INVALID:
        raise SubmissionError("the results do not make a valid submission:\n  " + "\n  ".join(problems))
    return submission


def schema_problems(sub: Any) -> list[str]:
    """Where ``sub`` departs from docs/submission.schema.json (the first 20)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
    out = []
    for err in sorted(validator.iter_errors(sub), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(map(str, err.absolute_path)) or "(top level)"
        message = err.message if len(err.message) < 300 else err.message[:300] + "…"
        out.append(f"{where}: {message}")
        if len(out) == 20:
            break
    return out


def _expansion(suite: str) -> dict[str, Any]:
    """cell id -> Cell of the suite's evaluation cells, as this repository expands the suite."""
    from prt_bench.suite.plan import expand
    from prt_bench.suite.schema import load_suite

    return {c.cell_id: c for c in expand(load_suite(suite)) if c.kind == "eval"}


def _config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _config_diff(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [f"{prefix} {b!r} (the suite's: {a!r})"]


def _cell_problems(cell: dict[str, Any], expected: dict[str, Any], suite: str) -> list[str]:
    from prt_bench.suite import modalities, samples
    from prt_bench.suite.plan import Cell

    cid = cell["cell_id"]
    label = f"cell {cid} ({cell.get('method')} {cell.get('source') or ''}→{cell.get('target')})"
    if config_hash(cell["config"]) != cid:
        return [f"{label}: its config hashes to {config_hash(cell['config'])}, not to its id"]
    want: Cell | None = expected.get(cid)
    if want is None:
        same = [c for c in expected.values() if all(getattr(c, k) == cell.get(k) for k in IDENTITY)]
        why = "; differs in " + ", ".join(_config_diff(same[0].config, cell["config"])[:4]) if same else ""
        return [f"{label}: not a cell of suite {suite!r} as this repository expands it{why}"]
    out = [f"{label}: {k} is {cell.get(k)!r} but the suite's cell says {getattr(want, k)!r}"
           for k in IDENTITY if cell.get(k) != getattr(want, k)]
    modality = modalities.get(want.modality)
    primary = want.config["task_config"].get("primary_metric", modality.default_primary)
    if cell["primary_metric"] != primary:
        out.append(f"{label}: primary_metric is {cell['primary_metric']!r}, the suite's is {primary!r}")
    try:
        blob = base64.b64decode(cell["samples"]["gzip_base64"], validate=True)
    except ValueError as e:
        return out + [f"{label}: samples are not base64 ({e})"]
    if hashlib.sha256(blob).hexdigest() != cell["samples"]["sha256"]:
        return out + [f"{label}: the samples do not hash to their sha256"]
    try:
        header, rows = samples.decode(blob, where=label)
        fresh = modality.rescore(header, rows, want.config["task_config"])
    except (samples.SamplesError, KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        return out + [f"{label}: the samples cannot be rescored ({type(e).__name__}: {e})"]
    out += [f"{label}: {d}" for d in samples.compare(cell["metrics"], fresh)]
    if primary not in cell["metrics"]:
        out.append(f"{label}: the primary metric {primary!r} is missing")
    return out


def verify_against_suite(sub: Any) -> tuple[str, list[str]]:
    """(VALID | INCOMPLETE | INVALID, the reasons): see the module's docstring."""
    if not isinstance(sub, dict):
        return INVALID, ["not a JSON object"]
    if sub.get("schema") != SUBMISSION_SCHEMA:
        return INVALID, [f"unknown schema {sub.get('schema')!r} (expected {SUBMISSION_SCHEMA!r}, "
                         "docs/submission.schema.json)"]
    problems = schema_problems(sub)
    if problems:
        return INVALID, problems
    p = name_problem(sub["name"])
    if p:
        return INVALID, [p]
    try:
        expected = _expansion(sub["suite"])
    except Exception as e:  # noqa: BLE001  (an unknown or broken suite file)
        return INVALID, [f"suite {sub['suite']!r} cannot be expanded here: {type(e).__name__}: {e}"]
    seen: Counter = Counter(c["cell_id"] for c in sub["cells"])
    problems += [f"cell {cid} appears {n} times" for cid, n in seen.items() if n > 1]
    for cell in sub["cells"]:
        problems += _cell_problems(cell, expected, sub["suite"])
    found = sub.get("checksum")
    if found != checksum(sub):
        problems.append(f"wrong checksum: the file says {found!r} but its content hashes to {checksum(sub)} "
                        "(edited after packing?)")
    if problems:
        return INVALID, problems
    missing = [expected[c].label for c in sorted(set(expected) - set(seen), key=lambda c: expected[c].label)]
    if missing:
        return INCOMPLETE, [f"incomplete: {len(missing)} of the suite's {len(expected)} evaluation cells missing: "
                            + "; ".join(missing[:5]) + ("; …" if len(missing) > 5 else "")]
    return VALID, []


def parse_submission(data: bytes) -> tuple[Any, str | None]:
    """(object, None) or (None, why the bytes are not a submission's JSON)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"malformed JSON: not UTF-8 ({e})"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as e:
        return None, f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}"
    except RecursionError:
        return None, "malformed JSON: nested too deeply"


def fingerprint(sub: dict[str, Any]) -> str:
    """What makes two submissions the same results: their cells and metrics (not name or date)."""
    return hashlib.sha256(canonical(sub.get("cells"))).hexdigest()


@dataclass
class Outcome:
    accepted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (file name, submission): ranked
    apart: list[tuple[str, dict[str, Any], list[str]]] = field(default_factory=list)  # valid but not ranked, why
    rejected: list[tuple[str, list[str]]] = field(default_factory=list)  # (file name, reasons)
    written: list[Path] = field(default_factory=list)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def collect(submissions_dir: str | os.PathLike) -> Outcome:
    """Verify every `*.json` in a folder; rejections do not stop the others."""
    folder = Path(submissions_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"submissions folder {folder} does not exist")
    out = Outcome()
    by_print: dict[str, str] = {}
    passed: list[tuple[str, dict[str, Any], list[str]]] = []
    for path in sorted(folder.glob("*.json")):
        fname = path.name
        if not _inside(path, folder):
            out.rejected.append((fname, [f"path escapes the submissions folder (it points to {path.resolve()})"]))
            continue
        if not path.is_file():
            out.rejected.append((fname, ["not a regular file"]))
            continue
        if path.stat().st_size > MAX_BYTES:
            out.rejected.append((fname, [f"larger than {MAX_BYTES >> 20} MiB"]))
            continue
        sub, err = parse_submission(path.read_bytes())
        if err:
            out.rejected.append((fname, [err]))
            continue
        status, problems = verify_against_suite(sub)
        if status == INVALID:
            out.rejected.append((fname, problems))
            continue
        fp = fingerprint(sub)
        if fp in by_print:
            out.rejected.append((fname, [f"duplicate of {by_print[fp]} (same cells and metrics)"]))
            continue
        by_print[fp] = fname
        passed.append((fname, sub, problems))
    names = Counter(sub["name"] for _, sub, _ in passed)
    for fname, sub, problems in passed:
        if names[sub["name"]] > 1:
            others = ", ".join(f for f, s, _ in passed if s["name"] == sub["name"] and f != fname)
            problems = problems + [f"the name {sub['name']!r} is also claimed by {others} with other results: "
                                   "neither is ranked"]
        if problems:
            out.apart.append((fname, sub, problems))
        else:
            out.accepted.append((fname, sub))
    return out


CSV_COLUMNS = ("name", "suite", "modality", "task", "scenario", "method", "source", "target", "alpha", "seed",
               "metric", "value", "stderr", "cell_id", "checksum", "git_commit", "device")


def _csv_rows(out: Outcome) -> list[dict[str, Any]]:
    from prt_bench.report.results import stderr_key

    rows = []
    for _, sub in out.accepted:
        env = sub.get("environment") or {}
        for c in sub["cells"]:
            pm = c["primary_metric"]
            rows.append({
                "name": sub["name"], "suite": sub["suite"], "modality": c.get("modality"), "task": c.get("task"),
                "scenario": c.get("scenario"), "method": c.get("method"), "source": c.get("source"),
                "target": c.get("target"), "alpha": c.get("alpha"), "seed": c.get("seed"), "metric": pm,
                "value": c["metrics"][pm], "stderr": c["metrics"].get(stderr_key(pm)), "cell_id": c["cell_id"],
                "checksum": sub["checksum"], "git_commit": env.get("git_commit"), "device": env.get("device"),
            })
    return rows


def _headline(sub: dict[str, Any]) -> list[dict[str, Any]]:
    """Per task: mean over the swapped transfers (source ≠ target) of PRT, EFT, target alone, FT(target)."""
    import pandas as pd

    from prt_bench.report.results import mark_swept_lams, aggregate, cell_row, probes_of
    from prt_bench.report.tables import Lookup

    records = [{**c, "suite": sub["suite"], "kind": "eval", "status": "done", "results": {c.get("task"): c["metrics"]}}
               for c in sub["cells"]]
    rows = [r for r in map(cell_row, records) if r]
    mark_swept_lams(rows, records)
    lk = Lookup(aggregate(pd.DataFrame(rows)), probe_of=probes_of(records))
    out = []
    for modality, task in lk.tasks():
        cols: dict[str, list[float]] = {"PRT": [], "EFT": [], "target alone": [], "FT (target)": []}
        for s, t, _ in lk.pairs(task):
            if s == t:
                continue
            for key, v in (("PRT", lk.prt(task, s, t)), ("EFT", lk.eft(task, s, t)),
                           ("target alone", lk.base_alone(task, t)), ("FT (target)", lk.ft_of(task, t))):
                if v is not None:
                    cols[key].append(v.mean)
        mean = {k: (sum(v) / len(v) if v else None) for k, v in cols.items()}
        out.append({"task": task, "modality": modality, "metric": lk.metric(task),
                    "transfers": sum(1 for s, t, _ in lk.pairs(task) if s != t), **mean})
    return out


def _md_escape(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def leaderboard_markdown(out: Outcome) -> str:
    from prt_bench.report.tables import to_markdown
    import pandas as pd

    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# prt-bench leaderboard", "",
             f"Built {now}: {len(out.accepted)} submission(s) ranked, {len(out.apart)} listed apart, "
             f"{len(out.rejected)} rejected.", "",
             "Every submission is verified against the expansion of the suite it names: the same cells and "
             "configs, metrics recomputed from its per-sample records (docs/report.md). Per task, the mean over "
             "the swapped transfers (source ≠ target) of each method's primary metric; ranked by PRT. Every "
             "cell is in `leaderboard.csv`.", ""]
    by_task: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for fname, sub in out.accepted:
        env = sub.get("environment") or {}
        for h in _headline(sub):
            by_task.setdefault((sub["suite"], h["task"]), []).append({**h, "name": sub["name"], "file": fname,
                                                                     "variant": sub["variant"]["name"],
                                                                     "cells": len(sub["cells"]),
                                                                     "commit": (env.get("git_commit") or "?")[:10],
                                                                     "device": env.get("device") or "?",
                                                                     "checksum": sub["checksum"][7:19]})
    f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    for (suite, task), entries in sorted(by_task.items()):
        entries.sort(key=lambda e: -(e["PRT"] if e["PRT"] is not None else -1))
        lines += [f"## {suite} / {task}", "", f"Metric `{entries[0]['metric']}`.", ""]
        table = pd.DataFrame([{"rank": i + 1, "name": e["name"], "variant": e["variant"], "PRT": f(e["PRT"]), "EFT": f(e["EFT"]),
                               "target alone": f(e["target alone"]), "FT (target)": f(e["FT (target)"]),
                               "transfers": e["transfers"], "cells": e["cells"], "device": e["device"],
                               "commit": e["commit"], "checksum": e["checksum"]} for i, e in enumerate(entries)])
        lines += [to_markdown(table), ""]
    if not by_task:
        lines += ["_No accepted submissions._", ""]
    lines += ["## Listed apart (verified, not ranked)", ""]
    if out.apart:
        lines += ["| file | name | why |", "|---|---|---|"]
        lines += [f"| {_md_escape(f)} | {_md_escape(sub['name'])} | {_md_escape('; '.join(why))} |"
                  for f, sub, why in out.apart]
    else:
        lines.append("_None._")
    lines += ["", "## Rejected", ""]
    if out.rejected:
        lines += ["| file | reasons |", "|---|---|"]
        lines += [f"| {_md_escape(name)} | {_md_escape('; '.join(reasons))} |" for name, reasons in out.rejected]
    else:
        lines.append("_None._")
    return "\n".join(lines) + "\n"


def build_leaderboard(submissions_dir: str | os.PathLike, out_dir: str | os.PathLike = "results") -> Outcome:
    """Verify every submission in a folder and write `leaderboard.md`, `leaderboard.csv` and
    a copy of each ranked submission under `<out_dir>/submissions/<name>.json`."""
    out = collect(submissions_dir)
    out_dir = Path(out_dir)
    keep = out_dir / "submissions"
    for _, sub in out.accepted:
        dest = keep / f"{sub['name']}.json"
        if not _inside(dest, keep):  # the name check already refuses this; never write outside
            raise SubmissionError(f"refusing to write {dest}: outside {keep}")
        atomic_write_json(dest, sub).chmod(0o644)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    for row in _csv_rows(out):
        w.writerow(row)
    out.written.append(atomic_write_text(out_dir / "leaderboard.csv", buf.getvalue()))
    out.written.append(atomic_write_text(out_dir / "leaderboard.md", leaderboard_markdown(out)))
    for p in out.written:
        p.chmod(0o644)
    return out


@dataclass
class Reproduction:
    cell_id: str
    label: str
    reproduced: bool
    differences: list[str]
    z: float | None = None  # |submitted − re-run| / √(se² + se²) of the primary metric (reference.error_distance)

    def within_error(self) -> bool:
        """Bitwise, or its primary metric within 1.96 standard errors of the submission's."""
        from prt_bench.suite.reference import Z95

        return self.reproduced or (self.z is not None and self.z <= Z95)


def chosen_cells(sub: dict[str, Any], cells: int | None = 3, *, seed: int = 0,
                 named: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The ids of the cells a verification re-runs: those ``named`` (ids, or unique prefixes of
    them, as the report prints them), else ``cells`` sampled with ``seed``, else (None) all."""
    ids = sorted(c["cell_id"] for c in sub["cells"])
    if named:
        out = []
        for name in named:
            hits = [cid for cid in ids if cid.startswith(name)]
            if len(hits) != 1:
                raise SubmissionError(f"cell {name!r} names {'no cell' if not hits else f'{len(hits)} cells'} "
                                      "of the submission")
            out.append(hits[0])
        return sorted(set(out))
    if cells is None or cells >= len(ids):
        return ids
    if cells < 1:
        raise SubmissionError(f"--cells must be at least 1, got {cells}")
    return sorted(random.Random(seed).sample(ids, cells))


def verify_submission(sub: dict[str, Any], cells: int | None = 3, *, seed: int = 0, work: Path,
                      cache: Path | None = None, workers: int = 1,
                      named: list[str] | tuple[str, ...] = ()) -> list[Reproduction]:
    """Re-run evaluation cells of a submission (``chosen_cells``: those named, else ``cells``
    sampled with ``seed``, else all), with the training they need, in ``work``, at the thread
    count the submission records, and compare each with the submission: every metric, and the
    hash of the per-sample records."""
    from prt_bench.suite.reference import error_distance
    from prt_bench.suite.runner import RunOptions, run_suite
    from prt_bench.suite.samples import compare

    status, problems = verify_against_suite(sub)
    if status == INVALID:
        raise SubmissionError("the submission does not verify against its suite:\n  " + "\n  ".join(problems))
    by_id = {c["cell_id"]: c for c in sub["cells"]}
    ids = chosen_cells(sub, cells, seed=seed, named=named)
    options = RunOptions(results=work / "results", runs=work / "runs", cache=cache, gpus=[], workers=workers,
                         only=",".join(ids), report=False, progress=False, profile=False, compare=False)
    # CPU float reductions depend on the thread count: re-run at the submission's
    threads = (sub.get("environment") or {}).get("threads")
    saved = os.environ.get("PRT_BENCH_THREADS")
    if isinstance(threads, int) and threads > 0:
        os.environ["PRT_BENCH_THREADS"] = str(threads)
    try:
        summary = run_suite(sub["suite"], options)
    finally:
        if saved is None:
            os.environ.pop("PRT_BENCH_THREADS", None)
        else:
            os.environ["PRT_BENCH_THREADS"] = saved
    expected = _expansion(sub["suite"])
    out = []
    for cid in ids:
        record_path = summary.results_dir / "cells" / f"{cid}.json"
        if cid in summary.failed or not record_path.is_file():
            out.append(Reproduction(cid, expected[cid].label, False, [summary.failed.get(cid, "did not run")]))
            continue
        record = read_json(record_path)
        mine = (record.get("results") or {}).get(record["task"]) or {}
        diffs = compare(by_id[cid]["metrics"], mine)
        if record["samples"]["sha256"] != by_id[cid]["samples"]["sha256"]:
            diffs.append("per-sample records differ (sha256)")
        submitted = {"kind": "eval", "status": "done", "task": record["task"],
                     "primary_metric": by_id[cid].get("primary_metric", record.get("primary_metric")),
                     "results": {record["task"]: by_id[cid]["metrics"]}}
        out.append(Reproduction(cid, expected[cid].label, not diffs, diffs,
                                None if not diffs else error_distance(submitted, record)))
    return out
