"""`prt-bench run`: a suite file in, the transfer matrix's results and report out.

1. load and check the suite file (static: keys, names, tags) -- ``schema``;
2. expand it into cells -- ``plan``; keep those ``--only`` selects (with what they need);
3. skip what the results store already holds (the cell id is the content hash of its config);
   the results folder is the run's own (``results/local/<suite>/`` by default, locked while the
   run lasts), never the committed reference;
4. build the bases (mini world, tiny models), then check what needs files: tokenizers of each
   source/target pair, label sets, data -- ``checks`` -- all before any training;
5. run the training cells, then the evaluation cells, through one executor -- ``executors``
   (this process, a CPU pool, one process per GPU, Ray); the runner writes every record;
6. measure the cost profile of each modality the run covers, unless the results hold it
   already -- ``profile``;
7. rebuild the table from the cell files and build the report (``<results>/report.pdf``);
8. compare every cell with the committed reference of the suite, if it has one -- ``reference``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.markup import escape

from prt_bench.suite import checks, executors, modalities, reference
from prt_bench.suite.execute import Job, checkpoint_done
from prt_bench.suite.plan import Cell, expand
from prt_bench.suite.resolve import build_world, resolve_base, uses_hub
from prt_bench.suite.schema import Suite, SuiteError, load_suite
from prt_bench.suite.samples import samples_path
from prt_bench.suite.store import RunLock, copy_cell, read_cell, write_cell, write_table


@dataclass
class RunOptions:
    results: Path = Path("results/local")  # cells go to <results>/<suite>/cells/ (never the reference)
    runs: Path = Path("runs")           # checkpoints go to <runs>/<suite>/<cell_id>/
    cache: Path | None = None           # mini world and tiny bases (default: the repository's .cache/)
    executor: str = "local"             # "local" | "ray" | "slurm"
    ray_address: str | None = None
    retries: int = executors.RETRIES    # ray/slurm: runs again a cell whose process died
    slurm: dict | None = None           # submitit parameters (slurm_partition=..., gpus_per_node=..., cluster=local)
    train_processes: int = 1            # language training cells: torchrun processes each (GPUs each, on GPUs)
    gpus: list[str] | None = None       # None: every visible GPU; []: CPU only
    workers: int = 1                    # CPU only: cells at once, each in its own process on one core's share
    only: str | None = None
    dry_run: bool = False
    report: bool = True
    progress: bool = True
    profile: bool = True                # write <results>/<suite>/profile/<modality>.json (cost section)
    compare: bool = True                # compare the cells with results/reference/<suite>/ when it exists
    reuse_reference: bool = False       # take the reference's records as done instead of running them


@dataclass
class RunSummary:
    suite: str
    results_dir: Path
    total: int
    already_done: int
    ran: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    table: Path | None = None
    report: Path | None = None
    profiles: list[Path] = field(default_factory=list)   # profile files written by this run
    reused: int = 0                     # records copied from the reference (--reuse-reference)
    comparison: reference.Comparison | None = None
    comparison_file: Path | None = None
    wall_s: float = 0.0


def select(cells: list[Cell], pattern: str | None) -> list[Cell]:
    """Cells whose label or id matches `pattern` (globs or substrings, comma-separated), plus the
    training cells they need."""
    if not pattern:
        return cells
    patterns = [p.strip() for p in pattern.split(",") if p.strip()]
    globs = [p if any(ch in p for ch in "*?[") else f"*{p}*" for p in patterns]
    chosen = {c.cell_id for c in cells if any(fnmatch.fnmatch(c.label, g) for g in globs)
              or any(c.cell_id.startswith(p) for p in patterns)}
    for c in cells:
        if c.cell_id in chosen:
            chosen.update(c.needs.values())
    return [c for c in cells if c.cell_id in chosen]


def run_suite(suite_ref: str | Path, options: RunOptions, console=None) -> RunSummary:
    from rich.console import Console

    console = console or Console(file=sys.stderr)
    start = time.perf_counter()
    suite = load_suite(suite_ref)
    if not uses_hub(suite):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    matrix = expand(suite)
    cells = select(matrix, options.only)
    if options.only and not cells:
        raise SuiteError(f"--only {options.only!r} matches no cell of suite {suite.name} (see --dry-run for the labels)")
    results_dir = Path(options.results) / suite.name
    runs_dir = Path(options.runs) / suite.name
    if reference.inside_reference(results_dir):
        raise SuiteError(f"{results_dir} is inside the committed reference ({reference.REFERENCE_ROOT}): a run never "
                         "writes there; run into another --results folder, then `prt-bench reference update`")
    if options.dry_run:
        from rich.console import Console as StdoutConsole

        done = {c.cell_id for c in cells if read_cell(results_dir, c.cell_id) is not None}
        todo = _pending(cells, done, runs_dir)
        out = StdoutConsole()
        print_matrix(cells, done, todo, out)
        out.print(f"{len(cells)} cells, {len(cells) - len(todo)} done, {len(todo)} to run (results: {results_dir})")
        return RunSummary(suite.name, results_dir, len(cells), len(cells) - len(todo))
    with RunLock(results_dir):
        return _run_locked(suite, matrix, cells, results_dir, runs_dir, options, console, start)


def _run_locked(suite: Suite, matrix: list[Cell], cells: list[Cell], results_dir: Path, runs_dir: Path,
                options: RunOptions, console, start: float) -> RunSummary:
    reused = _copy_from_reference(suite.name, cells, results_dir) if options.reuse_reference else 0
    done = {c.cell_id for c in cells if read_cell(results_dir, c.cell_id) is not None}
    todo = _pending(cells, done, runs_dir)
    summary = RunSummary(suite.name, results_dir, len(cells), len(cells) - len(todo), reused=reused)

    cache = Path(options.cache) if options.cache else None
    worlds: dict[str, dict[str, str]] = {}
    resolved: dict[tuple[str, str], str] = {}
    if todo:
        from prt_bench.suite.execute import quiet_libraries

        _remove_abandoned(runs_dir)
        quiet_libraries()
        names = {c.modality for c in todo}
        checks.check_before_training(suite, names, None, {}, cache)
        for m in _modalities_using(todo, "mini"):
            console.print(f"mini {m} world: building the bases that are not cached yet")
            worlds[m] = build_world(suite, m, cache, options.progress)
        resolved.update(_resolve_bases(suite, todo, cache, worlds))
        checks.check_before_training(suite, names, resolved, worlds, cache)
        jobs = {c.cell_id: _job(c, suite, resolved, worlds, runs_dir, cache) for c in todo}
        train = [c for c in todo if c.kind == "train"]
        evals = [c for c in todo if c.kind == "eval"]
        executor = executors.make_executor(options.executor, options.gpus, options.workers, options.ray_address,
                                           options.retries, options.slurm, runs_dir / "slurm",
                                           options.train_processes)
        if options.train_processes > 1:
            from prt_bench.suite.execute import TRAIN_PROCESSES_ENV

            for c in train:
                jobs[c.cell_id].env[TRAIN_PROCESSES_ENV] = str(options.train_processes)
        with _Progress(len(cells), summary.already_done, options.progress, console) as progress:
            def started(job: Job, where: str) -> None:
                progress.start(job.cell_id, f"{job.cell.label} [{where}]" if where else job.cell.label)

            def finished(job: Job, record, why) -> None:
                if record is not None:
                    write_cell(results_dir, record)
                    summary.ran.append(job.cell_id)
                else:
                    summary.failed[job.cell_id] = why
                    progress.fail(job.cell.label, why)
                progress.finish(job.cell_id)

            for phase in (train, evals):
                runnable = [c for c in phase if not (set(c.needs.values()) & set(summary.failed))]
                for c in phase:
                    if c not in runnable:
                        summary.failed[c.cell_id] = "a training cell it needs failed"
                executor.run([jobs[c.cell_id] for c in runnable], started, finished)
    if options.profile and cells:
        summary.profiles = _profile(suite, cells, options, results_dir, cache, worlds, resolved, console)
    set_aside_superseded(results_dir, {c.cell_id for c in matrix}, console)
    summary.table = write_table(results_dir)
    if options.report:
        summary.report = build_report(results_dir, console)
    ref = reference.reference_dir(suite.name)
    if options.compare and not options.reuse_reference and (ref / "cells").is_dir():
        # a run of some cells (--only) is compared on those: the reference's others were not asked for
        summary.comparison = reference.compare(results_dir, ref,
                                               only={c.cell_id for c in cells} if options.only else None)
        summary.comparison_file = reference.write_comparison(summary.comparison, results_dir / "comparison.json")
    summary.wall_s = time.perf_counter() - start
    return summary


def _copy_from_reference(suite: str, cells: list[Cell], results_dir: Path) -> int:
    """--reuse-reference: the reference's records of the suite's cells, copied into the run's
    results as if they had run here (the report then shows the reference's numbers)."""
    ref = reference.reference_dir(suite)
    copied = 0
    for c in cells:
        record = read_cell(ref, c.cell_id)
        if record is not None and read_cell(results_dir, c.cell_id) is None:
            copy_cell(ref, results_dir, record)
            copied += 1
    return copied


def _profile(suite: Suite, cells: list[Cell], options: RunOptions, results_dir: Path, cache: Path | None,
             worlds: dict[str, dict[str, str]], resolved: dict[tuple[str, str], str], console) -> list[Path]:
    """The cost profile of each modality of the run's cells, where the results lack it (or hold
    one of other bases or settings); builds the bases it needs only then."""
    from prt_bench.suite import profile

    device = "cpu" if options.gpus == [] or not executors.visible_gpus() else "cuda"
    wanted = profile.requests(suite, {c.modality for c in cells}, device)
    todo = {m: r for m, r in wanted.items() if not profile.is_current(results_dir, r)}
    if not todo:
        return []

    def resolve(modality: str, name: str) -> str:
        if (modality, name) not in resolved:
            spec = suite.sections[modality].bases[name]
            if "mini" in spec and modality not in worlds:
                worlds[modality] = build_world(suite, modality, cache, options.progress)
            resolved[(modality, name)] = resolve_base(modality, spec, cache, worlds.get(modality))
        return resolved[(modality, name)]

    return profile.write_profiles(results_dir, todo, resolve, console)


def set_aside_superseded(results_dir: Path, current: set[str], console) -> None:
    """Move records of cells the suite no longer has (its config changed) to `superseded/`, so
    that the table and the report show the suite as it is now; nothing is deleted."""
    cells = results_dir / "cells"
    stale = [p for p in cells.glob("*.json") if p.stem not in current]
    if not stale:
        return
    target = results_dir / "superseded"
    target.mkdir(parents=True, exist_ok=True)
    for p in stale:
        os.replace(p, target / p.name)
        samples = samples_path(results_dir, p.stem)
        if samples.is_file():
            os.replace(samples, target / samples.name)
    console.print(f"{len(stale)} records of cells no longer in the suite moved to {target}")


def _remove_abandoned(runs_dir: Path) -> None:
    """Temporary training folders of runs that were killed (their process is gone)."""
    import shutil

    for tmp in runs_dir.glob(".*.tmp"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


def _pending(cells: list[Cell], done: set[str], runs_dir: Path) -> list[Cell]:
    """Cells without a record, and training cells whose checkpoint is gone but still needed."""
    todo_eval = [c for c in cells if c.kind == "eval" and c.cell_id not in done]
    needed = {i for c in todo_eval for i in c.needs.values()}
    todo_train = [c for c in cells if c.kind == "train" and (
        c.cell_id not in done or (c.cell_id in needed and not checkpoint_done(runs_dir / c.cell_id)))]
    return todo_train + todo_eval


def _modalities_using(cells: list[Cell], kind: str) -> list[str]:
    out = []
    for c in cells:
        data = c.config.get("data")
        refs = [c.config.get("base"), c.config.get("target"), c.config.get("source"),
                *(data if isinstance(data, list) else [data])]
        if any(isinstance(r, dict) and kind in r for r in refs) and c.modality not in out:
            out.append(c.modality)
    return out


def _resolve_bases(suite: Suite, cells: list[Cell], cache: Path, worlds: dict[str, dict[str, str]]
                   ) -> dict[tuple[str, str], str]:
    """(modality, base name) -> what the recipes load, for every base the cells use (all
    transfer bases, so the checks see every pair)."""
    resolved = {}
    for modality, section in suite.sections.items():
        if modality not in {c.modality for c in cells}:
            continue
        for name, spec in section.bases.items():
            resolved[(modality, name)] = resolve_base(modality, spec, cache, worlds.get(modality))
    return resolved


def _job(cell: Cell, suite: Suite, resolved: dict, worlds: dict, runs_dir: Path, cache: Path | None) -> Job:
    modality = modalities.get(cell.modality)
    world = worlds.get(cell.modality)
    base = lambda name: resolved[(cell.modality, name)]  # noqa: E731
    if cell.kind == "train":
        paths = {"base": base(cell.target), "data": modality.resolve_data(cell.config["data"], world, cache),
                 "out": str(runs_dir / cell.cell_id)}
    else:
        paths = {"target": base(cell.target)}
        if cell.source:
            paths["source"] = base(cell.source)
        for role, train_id in cell.needs.items():
            paths[role] = str(runs_dir / train_id)
        paths["model"] = paths.get("ft", paths["target"])
    return Job(cell=cell, suite=suite.name, paths=paths, logs=str(runs_dir / "logs"),
               env=modality.job_env(world, cache))


# ------------------------------------------------------------------------ display and report

class _Progress:
    """Cells done/total and the cells running now (rich)."""

    def __init__(self, total: int, done: int, enabled: bool, console):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.console = console
        self.running: dict[str, str] = {}
        self.progress = Progress(TextColumn("[bold]cells"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.description}"),
                                 console=console, disable=not enabled)
        self.task = self.progress.add_task("", total=total, completed=done)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def _show(self) -> None:
        self.progress.update(self.task, description=" | ".join(self.running.values()))

    def start(self, cell_id: str, label: str) -> None:
        self.running[cell_id] = label
        self._show()

    def finish(self, cell_id: str) -> None:
        self.running.pop(cell_id, None)
        self.progress.advance(self.task)
        self._show()

    def fail(self, label: str, why: str) -> None:
        self.console.print(f"[red]failed[/red] {escape(label)}: {escape(why)}")


LARGE_TRAINING = 10**8  # examples (steps x batch): far beyond any suite of this project


def training_size(cell: Cell) -> int | None:
    """Examples a training cell processes (steps x batch x accumulation), when its options say."""
    train = cell.config.get("train") or {}
    steps = train.get("steps") or train.get("max_steps")
    if cell.kind != "train" or not steps or not train.get("batch_size"):
        return None
    return int(steps * train["batch_size"] * train.get("grad_accum", 1))


def print_matrix(cells: list[Cell], done: set[str], todo: list[Cell], console) -> None:
    """One line per cell: id, status, what it is, and for training the examples it processes
    (plain text, so it can be grepped); a warning for training far beyond any sensible size."""
    pending = {c.cell_id for c in todo}
    large = []
    for c in cells:
        status = "to run" if c.cell_id in pending else "done"
        if c.cell_id in pending and c.cell_id in done:
            status = "to run (checkpoint gone)"
        size = training_size(c)
        cost = f"  [{size:,} examples]" if size else ""
        console.print(f"{c.cell_id}  {status:<8}  {c.label}{cost}", highlight=False, soft_wrap=True, markup=False)
        if size and size > LARGE_TRAINING and c.cell_id in pending:
            large.append(c.label)
    for label in large:
        console.print(f"warning: {label} trains on more than {LARGE_TRAINING:,} examples (steps x batch); is that meant?",
                      markup=False, style="yellow", soft_wrap=True)


def build_report(results_dir: Path, console) -> Path | None:
    """The report package's PDF of this results folder, when that package is there."""
    try:
        from prt_bench.report import build_report as report_api
    except ImportError:
        console.print("report: prt_bench.report.build_report is not available; skipped")
        return None
    try:
        out = report_api(results_dir, Path(results_dir) / "report.pdf")
    except Exception as e:  # noqa: BLE001 - the results stand without the report
        console.print(f"[red]report failed[/red]: {type(e).__name__}: {escape(str(e))}")
        return None
    return Path(out) if out else None


def summary_json(summary: RunSummary) -> str:
    d = asdict(summary)
    return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in d.items()}, indent=2)
