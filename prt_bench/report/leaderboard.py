"""Leaderboard submissions: pack a results folder, validate submissions, rank them.

A submission is one JSON file:

    {"schema": "prt-bench/submission/1", "suite": "mini", "name": "my-lab-run1",
     "created": "...", "environment": {...}, "git_commits": [...],
     "cells": [{"cell_id", "config_hash", "config", "modality", "task", "scenario", "method",
                "source", "target", "alpha", "seed", "primary_metric", "metrics": {...}}, ...],
     "checksum": "sha256:<hex>"}

Validation, in words:
- the file is JSON, its schema is SUBMISSION_SCHEMA and its suite a known suite;
- `name` is a plain name (letters, digits, `.`, `_`, `-`; no path): it names the copy of the
  submission kept under `<out-dir>/submissions/`, so `../x` would escape the output folder;
- every cell's `config_hash` equals `prt_bench.io.config_hash(config)` and its `cell_id`,
  and the cell's identity fields (suite, task, method, source, target, alpha, seed, modality,
  scenario) agree with its config wherever the config has them: a result cannot be relabelled;
- the metrics are bound to those hashes by `checksum`: the sha256 of the canonical JSON
  (sorted keys, no whitespace, no NaN) of the whole submission without its `checksum`.
  Any edit after packing (a metric, a config, a name) breaks it.  It is an integrity check,
  not a signature: it catches corruption and hand edits, not a forger who re-packs;
- values are sane: every metric a finite number; every rate (any metric but a `_stderr` or one
  of NOT_RATES such as `nll`) in [0, 1]; the others ≥ 0; `n_samples` a count; no cell twice;
- it is not a duplicate: the same cells and metrics (whatever the name and date), or a name
  that another accepted submission already holds.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prt_bench.io import CELL_SCHEMA, REPO_ROOT, SUBMISSION_SCHEMA, atomic_write_json, atomic_write_text, config_hash, name_problem, read_json

BUILTIN_SUITES = ("mini", "smoke", "paper-lm", "paper-vision")
HASH_RE = re.compile(r"^[0-9a-f]{16}$")
MAX_BYTES = 64 * 1024 * 1024
# Metrics that are not rates (the part of the key before the comma); every other metric is.
NOT_RATES = frozenset({"nll", "loss", "initial_loss", "final_loss", "perplexity", "word_perplexity",
                       "byte_perplexity", "bits_per_byte"})
IDENTITY = ("suite", "modality", "task", "scenario", "method", "source", "target", "alpha", "seed")


class SubmissionError(ValueError):
    """A submission cannot be packed or is invalid; the message says why."""


def known_suites(suites_dir: Path | None = None) -> set[str]:
    """The suites a submission may name: the suite files in the repo plus the built-in names."""
    d = suites_dir or (REPO_ROOT / "suites")
    found = {p.stem for p in d.glob("*.y*ml")} if d.is_dir() else set()
    return found | set(BUILTIN_SUITES)


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
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-_")
    return name[:80] or "submission"


def pack_submission(results_dir: str | os.PathLike, name: str | None = None) -> dict[str, Any]:
    """A sealed submission of every finished evaluation cell in a results folder."""
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
        suites.add(cell.get("suite"))
        envs.append(cell.get("environment") or {})
        entry = {k: cell.get(k) for k in IDENTITY if k != "suite"}
        entry.update(
            cell_id=cell.get("cell_id"), config_hash=cell.get("config_hash"), config=cell.get("config"),
            primary_metric=cell.get("primary_metric"),
            # Metrics are lm-eval's "<metric>,<filter>" keys (and the primary one, which a suite may
            # derive under any name); the rest ("alias", "sample_len", "n_samples") is bookkeeping.
            metrics={k: v for k, v in metrics.items()
                     if ("," in k or k == cell.get("primary_metric"))
                     and isinstance(v, (int, float)) and not isinstance(v, bool)},
        )
        if metrics.get("n_samples") is not None:
            entry["n_samples"] = metrics["n_samples"]
        cells.append(entry)
    if not cells:
        raise SubmissionError(f"{root} has no finished evaluation cells to submit")
    if len(suites) != 1:
        raise SubmissionError(f"{root} mixes suites {sorted(map(str, suites))}; submit one suite at a time")
    suite = suites.pop()
    env_counts = Counter(json.dumps(e, sort_keys=True) for e in envs)
    submission = seal({
        "schema": SUBMISSION_SCHEMA,
        "suite": suite,
        "name": name if name is not None else _safe_name(root.resolve().name),
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "environment": json.loads(env_counts.most_common(1)[0][0]),
        "git_commits": sorted({e.get("git_commit") for e in envs if e.get("git_commit")}),
        "cells": sorted(cells, key=lambda c: str(c["cell_id"])),
    })
    problems = validate_submission(submission)
    if problems:
        raise SubmissionError("the results do not make a valid submission:\n  " + "\n  ".join(problems))
    return submission


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _cell_problems(i: int, cell: Any, suite: str) -> list[str]:
    if not isinstance(cell, dict):
        return [f"cells[{i}] is not an object"]
    cid = cell.get("cell_id")
    label = f"cell {cid}" if isinstance(cid, str) and HASH_RE.match(cid) else f"cells[{i}]"
    out = []
    for key in ("cell_id", "config_hash"):
        v = cell.get(key)
        if not isinstance(v, str) or not HASH_RE.match(v):
            out.append(f"{label}: {key} {v!r} is not a 16-hex config hash")
    config = cell.get("config")
    if not isinstance(config, dict):
        out.append(f"{label}: config is missing")
    else:
        expect = config_hash(config)
        if cell.get("config_hash") != expect:
            out.append(f"{label}: config_hash {cell.get('config_hash')!r} does not match its config "
                       f"(config_hash(config) = {expect})")
        if cell.get("cell_id") != cell.get("config_hash"):
            out.append(f"{label}: cell_id differs from config_hash")
        for key in IDENTITY:
            want = suite if key == "suite" else cell.get(key)
            if key not in config or (key != "suite" and key not in cell):
                continue
            # Only plain values are compared: a config may hold e.g. a base as a mapping.
            if isinstance(config[key], (str, int, float, type(None))) and config[key] != want:
                out.append(f"{label}: {key} is {want!r} but its config says {config[key]!r}")
    metrics = cell.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        out.append(f"{label}: metrics are missing")
        return out
    pm = cell.get("primary_metric")
    if pm not in metrics:
        out.append(f"{label}: primary_metric {pm!r} is not among its metrics")
    for k, v in metrics.items():
        name = str(k).split(",")[0]
        if not _finite(v):
            out.append(f"{label}: metric {k} is {v!r} (NaN, infinite or not a number)")
        elif name in NOT_RATES or name.endswith("_stderr"):
            if v < 0:
                out.append(f"{label}: metric {k} = {v} is negative")
        elif not 0.0 <= v <= 1.0:
            out.append(f"{label}: metric {k} = {v} is outside [0, 1]")
    n = cell.get("n_samples")
    if n is not None and not (_finite(n) and n >= 0 and float(n).is_integer()):
        out.append(f"{label}: n_samples {n!r} is not a count")
    if "alpha" in cell and not (_finite(cell["alpha"]) and cell["alpha"] >= 0):
        out.append(f"{label}: alpha {cell['alpha']!r} is not a finite number ≥ 0")
    return out


def validate_submission(sub: Any, suites: set[str] | None = None) -> list[str]:
    """Every reason to reject `sub` (a parsed submission); empty when it is valid."""
    if not isinstance(sub, dict):
        return ["not a JSON object"]
    if sub.get("schema") != SUBMISSION_SCHEMA:
        return [f"unknown schema {sub.get('schema')!r} (expected {SUBMISSION_SCHEMA!r})"]
    problems = []
    suites = known_suites() if suites is None else suites
    suite = sub.get("suite")
    if suite not in suites:
        problems.append(f"unknown suite {suite!r} (known: {', '.join(sorted(suites))})")
    p = name_problem(sub.get("name"))
    if p:
        problems.append(p)
    cells = sub.get("cells")
    if not isinstance(cells, list) or not cells:
        problems.append("no cells")
        cells = []
    seen: set[Any] = set()
    for i, cell in enumerate(cells):
        problems.extend(_cell_problems(i, cell, suite))
        cid = cell.get("cell_id") if isinstance(cell, dict) else None
        if cid in seen:
            problems.append(f"cell {cid} appears twice")
        seen.add(cid)
    found = sub.get("checksum")
    expect = checksum(sub)
    if found != expect:
        problems.append(f"wrong checksum: the file says {found!r} but its content hashes to {expect} "
                        "(edited after packing?)")
    return problems


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
    accepted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (file name, submission)
    rejected: list[tuple[str, list[str]]] = field(default_factory=list)  # (file name, reasons)
    written: list[Path] = field(default_factory=list)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def collect(submissions_dir: str | os.PathLike, suites: set[str] | None = None) -> Outcome:
    """Validate every `*.json` in a folder; rejections do not stop the others."""
    folder = Path(submissions_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"submissions folder {folder} does not exist")
    out = Outcome()
    by_print: dict[str, str] = {}
    by_name: dict[str, str] = {}
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
        problems = validate_submission(sub, suites)
        if not problems:
            fp = fingerprint(sub)
            if fp in by_print:
                problems.append(f"duplicate of {by_print[fp]} (same cells and metrics)")
            elif sub["name"] in by_name:
                problems.append(f"name {sub['name']!r} is already taken by {by_name[sub['name']]}")
        if problems:
            out.rejected.append((fname, problems))
            continue
        by_print[fingerprint(sub)] = fname
        by_name[sub["name"]] = fname
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

    from prt_bench.report.results import aggregate, cell_row
    from prt_bench.report.tables import Lookup

    rows = [cell_row({**c, "suite": sub["suite"], "kind": "eval", "status": "done",
                      "results": {c.get("task"): c["metrics"]}}) for c in sub["cells"]]
    lk = Lookup(aggregate(pd.DataFrame([r for r in rows if r])))
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
             f"Built {now}: {len(out.accepted)} submission(s) accepted, {len(out.rejected)} rejected.", "",
             "Per task, the mean over the swapped transfers (source ≠ target) of each method's primary metric; "
             "ranked by PRT. Every cell is in `leaderboard.csv`.", ""]
    by_task: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for fname, sub in out.accepted:
        env = sub.get("environment") or {}
        for h in _headline(sub):
            by_task.setdefault((sub["suite"], h["task"]), []).append({**h, "name": sub["name"], "file": fname,
                                                                     "cells": len(sub["cells"]),
                                                                     "commit": (env.get("git_commit") or "?")[:10],
                                                                     "device": env.get("device") or "?",
                                                                     "checksum": sub["checksum"][7:19]})
    f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    for (suite, task), entries in sorted(by_task.items()):
        entries.sort(key=lambda e: -(e["PRT"] if e["PRT"] is not None else -1))
        lines += [f"## {suite} / {task}", "", f"Metric `{entries[0]['metric']}`.", ""]
        table = pd.DataFrame([{"rank": i + 1, "name": e["name"], "PRT": f(e["PRT"]), "EFT": f(e["EFT"]),
                               "target alone": f(e["target alone"]), "FT (target)": f(e["FT (target)"]),
                               "transfers": e["transfers"], "cells": e["cells"], "device": e["device"],
                               "commit": e["commit"], "checksum": e["checksum"]} for i, e in enumerate(entries)])
        lines += [to_markdown(table), ""]
    if not by_task:
        lines += ["_No accepted submissions._", ""]
    lines += ["## Rejected", ""]
    if out.rejected:
        lines += ["| file | reasons |", "|---|---|"]
        lines += [f"| {_md_escape(name)} | {_md_escape('; '.join(reasons))} |" for name, reasons in out.rejected]
    else:
        lines.append("_None._")
    return "\n".join(lines) + "\n"


def build_leaderboard(submissions_dir: str | os.PathLike, out_dir: str | os.PathLike = "results",
                      suites: set[str] | None = None) -> Outcome:
    """Validate every submission in a folder and write `leaderboard.md`, `leaderboard.csv` and
    a copy of each accepted submission under `<out_dir>/submissions/<name>.json`."""
    out = collect(submissions_dir, suites)
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
