"""`prt-bench run`: a suite file in, the transfer matrix's results and report out.

1. load and check the suite file (static: keys, names, tags) -- ``schema``;
2. expand it into cells -- ``plan``; keep those ``--only`` selects (with what they need);
3. skip what the results store already holds (the cell id is the content hash of its config);
   the results folder is the run's own (``results/local/<suite>/`` by default, locked while the
   run lasts), never the committed reference;
4. build the bases (mini world, tiny models), then check what needs files: tokenizers of each
   source/target pair, label sets, data -- ``checks`` -- all before any training;
5. run the training cells, then the evaluation cells, through one executor: in this process
   (CPU), one subprocess per visible GPU (CUDA_VISIBLE_DEVICES), or Ray tasks;
6. measure the cost profile of each modality the run covers, unless the results hold it
   already -- ``profile``;
7. rebuild the table from the cell files and build the report (``<results>/report.pdf``);
8. compare every cell with the committed reference of the suite, if it has one -- ``reference``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.markup import escape

from prt_bench.io import atomic_write_json
from prt_bench.suite import adapters, checks, reference
from prt_bench.suite.execute import checkpoint_done, run_job
from prt_bench.suite.plan import Cell, expand
from prt_bench.suite.schema import Suite, SuiteError, load_suite
from prt_bench.suite.store import RunLock, read_cell, write_cell, write_table


@dataclass
class RunOptions:
    results: Path = Path("results/local")  # cells go to <results>/<suite>/cells/ (never the reference)
    runs: Path = Path("runs")           # checkpoints go to <runs>/<suite>/<cell_id>/
    cache: Path | None = None           # mini world and tiny bases (default: the repository's .cache/)
    executor: str = "local"             # "local" | "ray"
    ray_address: str | None = None
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
    if not _uses_hub(suite):
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
        modalities = {c.modality for c in todo}
        checks.check_before_training(suite, modalities, None, {})
        for m in _modalities_using(todo, "mini"):
            console.print(f"mini {m} world: building the bases that are not cached yet")
            worlds[m] = adapters.mini_world(m, cache, _mini_variant(suite, m), progress=options.progress,
                                            only=_mini_names(suite, m))
        resolved.update(_resolve_bases(suite, todo, cache, worlds))
        checks.check_before_training(suite, modalities, resolved, worlds)
        jobs = {c.cell_id: _job(c, suite, resolved, worlds, results_dir, runs_dir, cache) for c in todo}
        train = [c for c in todo if c.kind == "train"]
        evals = [c for c in todo if c.kind == "eval"]
        execute = _executor(options, results_dir)
        with _Progress(len(cells), summary.already_done, options.progress, console) as progress:
            for phase in (train, evals):
                runnable = [c for c in phase if not (set(c.needs.values()) & set(summary.failed))]
                for c in phase:
                    if c not in runnable:
                        summary.failed[c.cell_id] = "a training cell it needs failed"
                execute([jobs[c.cell_id] for c in runnable], progress, summary)
    if options.profile and cells:
        summary.profiles = _profile(suite, cells, options, results_dir, cache, worlds, resolved, console)
    set_aside_superseded(results_dir, {c.cell_id for c in matrix}, console)
    summary.table = write_table(results_dir)
    if options.report:
        summary.report = build_report(results_dir, console)
    ref = reference.reference_dir(suite.name)
    if options.compare and not options.reuse_reference and (ref / "cells").is_dir():
        summary.comparison = reference.compare(results_dir, ref)
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
            write_cell(results_dir, record)
            copied += 1
    return copied


def _profile(suite: Suite, cells: list[Cell], options: RunOptions, results_dir: Path, cache: Path | None,
             worlds: dict[str, dict[str, str]], resolved: dict[tuple[str, str], str], console) -> list[Path]:
    """The cost profile of each modality of the run's cells, where the results lack it (or hold
    one of other bases or settings); builds the bases it needs only then."""
    from prt_bench.suite import profile

    device = "cpu" if options.gpus == [] or not _visible_gpus() else "cuda"
    wanted = profile.requests(suite, {c.modality for c in cells}, device)
    todo = {m: r for m, r in wanted.items() if not profile.is_current(results_dir, r)}
    if not todo:
        return []

    def resolve(modality: str, name: str) -> str:
        if (modality, name) not in resolved:
            spec = suite.sections[modality].bases[name]
            if "mini" in spec and modality not in worlds:
                worlds[modality] = adapters.mini_world(modality, cache, _mini_variant(suite, modality),
                                                       progress=options.progress, only=_mini_names(suite, modality))
            resolved[(modality, name)] = adapters.resolve_base(modality, spec, cache, worlds.get(modality))
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


def _uses_hub(suite: Suite) -> bool:
    for section in suite.sections.values():
        specs = list(section.bases.values()) + [section.train.get("data") or {}]
        specs += [t.get("train_data") or {} for t in section.tasks.values()]
        if any("hf" in s or "open_clip" in s or "hf_dataset" in s for s in specs):
            return True
    return False


def _pending(cells: list[Cell], done: set[str], runs_dir: Path) -> list[Cell]:
    """Cells without a record, and training cells whose checkpoint is gone but still needed."""
    todo_eval = [c for c in cells if c.kind == "eval" and c.cell_id not in done]
    needed = {i for c in todo_eval for i in c.needs.values()}
    todo_train = [c for c in cells if c.kind == "train" and (
        c.cell_id not in done or (c.cell_id in needed and not checkpoint_done(runs_dir / c.cell_id)))]
    return todo_train + todo_eval


def _mini_variant(suite: Suite, modality: str) -> str:
    variants = {spec.get("variant", "default") for spec in suite.sections[modality].bases.values() if "mini" in spec}
    if len(variants) > 1:
        raise ValueError(f"{suite.path}: {modality} bases from several mini world variants {sorted(variants)}")
    return variants.pop() if variants else "default"


def _mini_names(suite: Suite, modality: str) -> list[str]:
    """The mini-world bases a suite section names (the world builds only these)."""
    return [spec["mini"] for spec in suite.sections[modality].bases.values() if "mini" in spec]


def _modalities_using(cells: list[Cell], kind: str) -> list[str]:
    out = []
    for c in cells:
        refs = [c.config.get("base"), c.config.get("target"), c.config.get("source"), c.config.get("data")]
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
            resolved[(modality, name)] = adapters.resolve_base(modality, spec, cache, worlds.get(modality))
    return resolved


def _job(cell: Cell, suite: Suite, resolved: dict, worlds: dict, results_dir: Path, runs_dir: Path,
         cache: Path | None) -> dict[str, Any]:
    base = lambda name: resolved[(cell.modality, name)]  # noqa: E731
    if cell.kind == "train":
        data = cell.config["data"]
        if cell.modality == "lm":
            data_path = adapters.resolve_data(data, worlds.get("lm"), cache)
        else:
            data_path = data  # {"dataset": name, "split": ...}: the vision registry finds the files
        paths = {"base": base(cell.target), "data": data_path, "out": str(runs_dir / cell.cell_id)}
    else:
        paths = {"target": base(cell.target)}
        if cell.source:
            paths["source"] = base(cell.source)
        for role, train_id in cell.needs.items():
            paths[role] = str(runs_dir / train_id)
        paths["model"] = paths.get("ft", paths["target"])
    env = {}
    if cell.modality == "lm" and "lm" in worlds:
        from prt_bench.mini.lm.tasks import ENV_VAR

        env[ENV_VAR] = worlds["lm"]["data_dir"]  # where the mini tasks' lm-eval files read their data
    return {"cell": asdict(cell), "paths": paths, "suite": suite.name, "results": str(results_dir),
            "logs": str(runs_dir / "logs"), "env": env}


# ------------------------------------------------------------------------ executors

def _executor(options: RunOptions, results_dir: Path) -> Callable:
    if options.executor == "ray":
        return lambda jobs, progress, summary: _run_ray(jobs, progress, summary, options, results_dir)
    if options.executor != "local":
        raise ValueError(f"unknown executor {options.executor!r} (local or ray)")
    gpus = _visible_gpus() if options.gpus is None else options.gpus
    if gpus:
        return lambda jobs, progress, summary: _run_subprocesses(jobs, progress, summary, gpus, results_dir)
    if options.workers < 1:
        raise ValueError(f"workers must be at least 1, got {options.workers}")
    if options.workers > 1:
        return lambda jobs, progress, summary: _run_cpu_pool(jobs, progress, summary, options.workers, results_dir)
    return lambda jobs, progress, summary: _run_here(jobs, progress, summary, results_dir)


def _visible_gpus() -> list[str]:
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def _run_here(jobs, progress, summary, results_dir: Path) -> None:
    """Cells one after the other in this process."""
    for job in jobs:
        progress.start(job["cell"]["cell_id"], _label(job))
        _store(job, *_run_logged(job), progress, summary, results_dir)


def _run_logged(job: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """One cell, what the libraries print going to the cell's log: (record, None) or (None, why)."""
    import contextlib
    import traceback

    log = _log_path(job)
    with open(log, "w", encoding="utf-8") as f, contextlib.redirect_stderr(f), contextlib.redirect_stdout(f):
        try:
            return run_job(job), None
        except Exception as e:  # noqa: BLE001 - one failed cell must not stop the matrix
            traceback.print_exc(file=f)
            return None, f"{type(e).__name__}: {e} (log: {log})"


def _store(job: dict[str, Any], record: dict[str, Any] | None, why: str | None, progress, summary,
           results_dir: Path) -> None:
    """Write a finished cell's record, or note why it failed."""
    cell_id = job["cell"]["cell_id"]
    if record is not None:
        write_cell(results_dir, record)
        summary.ran.append(cell_id)
    else:
        summary.failed[cell_id] = why
        progress.fail(_label(job), why)
    progress.finish(cell_id)


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when the process that started it dies, however it
    dies (SIGKILL included): a killed runner must not leave workers training under PID 1."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):  # not Linux: the runner's SIGTERM handler still ends the pool
        return
    if os.getppid() != parent:  # the parent died before the line above (we were reparented)
        os._exit(1)


def _pool_start(threads: int, runner: int) -> None:
    """Start-up of a CPU pool worker: dies with the runner, its share of the cores, no GPU."""
    _die_with_parent(runner)
    os.environ["PRT_BENCH_THREADS"] = str(threads)
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    torch.set_num_threads(threads)


def _pool_job(job: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """One cell in a pool worker (see _run_logged)."""
    from prt_bench.suite.execute import quiet_libraries

    quiet_libraries()
    return _run_logged(job)


def _run_cpu_pool(jobs, progress, summary, workers: int, results_dir: Path) -> None:
    """Cells `workers` at a time on the CPU, in worker processes that each use an equal share of
    the cores (one thread each on a 2-core machine with 2 workers); this process stores the records.
    Small models gain little from a second thread, so whole cells are spread over the cores."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    if not jobs:
        return
    threads = int(os.environ.get("PRT_BENCH_THREADS") or max(1, (os.cpu_count() or 1) // workers))
    waiting = list(jobs)
    pending: dict[Any, dict[str, Any]] = {}
    pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn"),
                               initializer=_pool_start, initargs=(threads, os.getpid()))

    def submit() -> None:  # `workers` cells in flight, so the display shows the running ones
        while waiting and len(pending) < workers:
            job = waiting.pop(0)
            pending[pool.submit(_pool_job, job)] = job
            progress.start(job["cell"]["cell_id"], f"{_label(job)} [cpu]")

    try:
        submit()
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                job = pending.pop(fut)
                try:
                    record, why = fut.result()
                except Exception as e:  # noqa: BLE001 - a worker that died takes only its cell
                    record, why = None, f"worker failed: {type(e).__name__}: {e}"
                _store(job, record, why, progress, summary, results_dir)
            submit()
    except BaseException:  # SIGTERM (SystemExit), Ctrl-C: stop the cells now instead of waiting for them
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _log_path(job: dict[str, Any]) -> Path:
    logs = Path(job["logs"])
    logs.mkdir(parents=True, exist_ok=True)
    return logs / f"{job['cell']['cell_id']}.log"


def _run_subprocesses(jobs, progress, summary, gpus: list[str], results_dir: Path) -> None:
    """One cell per GPU at a time, each in its own process that sees only its GPU."""
    import queue

    free: queue.Queue[str] = queue.Queue()
    for g in gpus:
        free.put(g)
    job_dir = Path(tempfile.mkdtemp(prefix="prt-bench-jobs-"))

    def one(job):
        gpu = free.get()
        try:
            progress.start(job["cell"]["cell_id"], f"{_label(job)} [GPU {gpu}]")
            path = job_dir / f"{job['cell']['cell_id']}.json"
            atomic_write_json(path, job)
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
            with open(_log_path(job), "w", encoding="utf-8") as log:
                proc = subprocess.run([sys.executable, "-m", "prt_bench.suite.worker", str(path)], env=env,
                                      stdout=log, stderr=subprocess.STDOUT, text=True)
            return job, proc
        finally:
            free.put(gpu)

    with ThreadPoolExecutor(max_workers=len(gpus)) as pool:
        for fut in as_completed([pool.submit(one, job) for job in jobs]):
            job, proc = fut.result()
            cell_id = job["cell"]["cell_id"]
            if proc.returncode == 0 and read_cell(results_dir, cell_id) is not None:
                summary.ran.append(cell_id)
            else:
                log = _log_path(job)
                last = (log.read_text(encoding="utf-8").strip().splitlines() or ["no output"])[-1]
                summary.failed[cell_id] = f"{last} (exit {proc.returncode}, log: {log})"
                progress.fail(_label(job), summary.failed[cell_id])
            progress.finish(cell_id)


def _run_ray(jobs, progress, summary, options: RunOptions, results_dir: Path) -> None:
    """The same jobs as Ray tasks, one GPU each when the cluster has GPUs; the driver stores records."""
    import ray

    if not ray.is_initialized():
        # the settings that decide where data and models come from travel with the tasks
        passed = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "PRT_BENCH_DATA", "HF_HOME", "TOKENIZERS_PARALLELISM")
        runtime_env = {"env_vars": {k: os.environ[k] for k in passed if k in os.environ}}
        if options.ray_address:
            ray.init(address=options.ray_address, log_to_driver=False, runtime_env=runtime_env)
        else:
            ray.init(include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)
    gpus = ray.cluster_resources().get("GPU", 0)
    remote = ray.remote(num_gpus=1 if gpus else 0, max_retries=0)(run_job)
    pending = {}
    for job in jobs:
        pending[remote.remote(job)] = job
        progress.start(job["cell"]["cell_id"], _label(job) + " [ray]")
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ready[0])
        cell_id = job["cell"]["cell_id"]
        try:
            write_cell(results_dir, ray.get(ready[0]))
            summary.ran.append(cell_id)
        except Exception as e:  # noqa: BLE001
            summary.failed[cell_id] = f"{type(e).__name__}: {e}".splitlines()[0]
            progress.fail(_label(job), summary.failed[cell_id])
        progress.finish(cell_id)


def _label(job: dict[str, Any]) -> str:
    return Cell(**job["cell"]).label


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
