"""`prt-bench run`: run a whole suite (light imports only; the work is in `runner`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def run(
    suite: str = typer.Option("mini", "--suite", help="A suite name (suites/<name>.yaml) or a path to a suite file."),
    results: Path = typer.Option(Path("results/local"), "--results", help="Results root: cells go to "
                                 "DIR/<suite>/cells/ (never results/reference/, the committed reference)."),
    runs: Path = typer.Option(Path("runs"), "--runs", help="Where trained checkpoints go (DIR/<suite>/<cell_id>/)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Cache of the mini world and tiny bases "
                                         "(default: .cache/ in the repository)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the matrix and what is done; touch no model."),
    only: Optional[str] = typer.Option(None, "--only", help="Run only cells whose label or id matches (globs or substrings, comma-separated), with the training they need."),
    executor: str = typer.Option("local", "--executor", help="local (this machine), ray (Ray tasks) or slurm "
                                 "(one SLURM job per cell through submitit)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address (default: start a local one)."),
    slurm: Optional[str] = typer.Option(None, "--slurm", help="--executor slurm: submitit parameters, comma-separated "
                                        "KEY=VALUE, e.g. slurm_partition=gpu,gpus_per_node=1,cpus_per_task=8,"
                                        "timeout_min=240 (cluster=local: run the jobs on this machine)."),
    train_processes: int = typer.Option(1, "--train-processes", help="Language training cells: train each in N "
                                        "processes (torchrun; on GPUs, N GPUs per cell), DDP or FSDP as the suite's "
                                        "train: strategy says."),
    retries: int = typer.Option(2, "--retries", help="ray/slurm: how often a cell whose process died (killed worker, "
                                "lost node) is run again; a cell that raised is not."),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="GPU ids for the local executor, e.g. 0,1 "
                                       "(default: all visible; 'none': CPU in this process)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="CPU only: cells run at once, each in its own "
                                          "process (default: one per CPU core, at most 4; 1: one after the other "
                                          "in this process)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Build the report at the end."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress display."),
    profile: bool = typer.Option(True, "--profile/--no-profile", help="Measure the cost profile (FT vs PRT vs "
                                 "EFT, seconds per modality) into DIR/<suite>/profile/, unless it is there."),
    compare: bool = typer.Option(True, "--compare/--no-compare", help="Compare every cell with the committed "
                                 "reference (results/reference/<suite>/) and write DIR/<suite>/comparison.json; exit 1 "
                                 "when a cell is on one side only or an evaluation moved beyond its 95 % sampling "
                                 "error."),
    reuse_reference: bool = typer.Option(False, "--reuse-reference", help="Take the reference's records as done "
                                         "instead of running them (only the report, no reproduction)."),
) -> None:
    """Run a suite: train every training cell once, evaluate the transfer matrix, write one
    JSON per cell and the table, build the report.  Resumable: done cells are skipped."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from rich.console import Console
    from rich.markup import escape

    from prt_bench.suite.runner import RunOptions, run_suite
    from prt_bench.suite.schema import SuiteError
    from prt_bench.suite.store import ResultsInUse

    gpu_list = None if gpus is None else ([] if gpus.strip().lower() in ("none", "") else
                                          [g.strip() for g in gpus.split(",") if g.strip()])
    import sys

    console = Console(file=sys.stderr)  # this stream, not one a running cell redirects
    if executor not in ("local", "ray", "slurm"):
        raise typer.BadParameter(f"unknown executor {executor!r}; use local, ray or slurm", param_hint="--executor")
    if slurm is not None and executor != "slurm":
        raise typer.BadParameter("only with --executor slurm", param_hint="--slurm")
    if retries < 0:
        raise typer.BadParameter(f"must be at least 0, got {retries}", param_hint="--retries")
    if train_processes < 1:
        raise typer.BadParameter(f"must be at least 1, got {train_processes}", param_hint="--train-processes")
    slurm_params = key_values(slurm, "--slurm") if slurm else {}
    if workers is not None and workers < 1:
        raise typer.BadParameter(f"must be at least 1, got {workers}", param_hint="--workers")
    if workers is None:
        workers = max(1, min(4, os.cpu_count() or 1))
    options = RunOptions(results=results, runs=runs, cache=cache, executor=executor, ray_address=ray_address,
                         retries=retries, slurm=slurm_params, train_processes=train_processes,
                         gpus=gpu_list, workers=workers, only=only, dry_run=dry_run, report=report,
                         progress=progress, profile=profile, compare=compare, reuse_reference=reuse_reference)
    import signal

    # SIGTERM (timeout, systemd, Slurm) unwinds like Ctrl-C: the CPU pool is stopped, the lock released
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        summary = run_suite(suite, options, console)
    except SuiteError as e:
        console.print(f"suite error: {e}", markup=False, style="red")  # no markup: names like x[0:5] stay whole
        raise typer.Exit(2)
    except ResultsInUse as e:
        console.print(str(e), markup=False, style="red")
        raise typer.Exit(2)
    if dry_run:
        return
    reused = f" ({summary.reused} copied from the reference, not run)" if summary.reused else ""
    console.print(f"suite {summary.suite}: {summary.total} cells, {summary.already_done} already done{reused}, "
                  f"{len(summary.ran)} run now, {len(summary.failed)} failed, in {summary.wall_s:.1f} s")
    for cell_id, why in summary.failed.items():
        console.print(f"  [red]failed[/red] {cell_id}: {escape(why)}")
    typer.echo(f"results: {summary.results_dir}/cells/  table: {summary.table}")
    if summary.report:
        typer.echo(f"report: {summary.report}")
    if summary.comparison is not None:
        typer.echo(f"comparison: {summary.comparison_file}: this run {summary.comparison.verdict()}")
        for line in summary.comparison.summary("this run", "reference"):
            typer.echo(line)
    if summary.failed or (summary.comparison is not None and not summary.comparison.agrees):
        raise typer.Exit(1)


def compare(
    a: Path = typer.Argument(..., help="A results folder of a suite (DIR/cells/*.json), e.g. results/local/mini."),
    b: Path = typer.Argument(..., help="The folder to compare it with, e.g. results/reference/mini."),
    tolerance: float = typer.Option(1e-6, "--tolerance", help="Absolute tolerance on every number of a cell's "
                                    "results: within it a cell is 'within tolerance', beyond it 'different'."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the comparison (every cell) as JSON here."),
    within_error: bool = typer.Option(False, "--within-error", help="Exit 0 also when the two only agree within "
                                      "sampling error (every cell on both sides, no evaluation moved beyond 1.96 "
                                      "standard errors): the test across CPUs, as prt-bench run's."),
) -> None:
    """Compare two results folders cell by cell: bitwise equal, within the tolerance, different,
    or present on one side only, with the largest differences named and each moved evaluation's
    distance in standard errors.  Exit 1 unless every cell is on both sides and none differs
    beyond the tolerance (with --within-error: none beyond its sampling error)."""
    from prt_bench.suite import reference

    try:
        comparison = reference.compare(a, b, tolerance)
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    if out is not None:
        reference.write_comparison(comparison, out)
    typer.echo(f"A {comparison.verdict().replace('the reference', 'B')}")
    for line in comparison.summary("A", "B"):
        typer.echo(line)
    if not (comparison.agrees if within_error else comparison.reproduced):
        raise typer.Exit(1)


def rescore(
    results: Path = typer.Argument(..., help="A results folder of a suite (DIR/cells/*.json), e.g. results/local/mini."),
) -> None:
    """Recompute every evaluation cell's metrics from its per-sample records (after checking the
    records against the hash in the cell) and compare them with the cell's, number by number.
    Exit 1 unless every metric of every cell comes back exactly."""
    from prt_bench.suite.samples import rescore_folder

    try:
        problems = rescore_folder(results)
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    bad = {cell: p for cell, p in problems.items() if p}
    for cell, p in bad.items():
        typer.echo(f"{cell}: " + "; ".join(p))
    typer.echo(f"{len(problems)} evaluation cells rescored from their samples: {len(problems) - len(bad)} reproduce "
               f"every metric exactly, {len(bad)} do not")
    if bad or not problems:
        raise typer.Exit(1)


def reference_update(
    suite: str = typer.Option(..., "--suite", help="The suite whose reference is replaced (its name)."),
    results: Path = typer.Option(Path("results/local"), "--results", help="Results root of the run to adopt: "
                                 "DIR/<suite>/ becomes results/reference/<suite>/."),
    report: bool = typer.Option(True, "--report/--no-report", help="Rebuild reports/<suite>.pdf from the new reference."),
) -> None:
    """Make a finished run the committed reference of its suite (cells, table, profile) and
    rebuild the reference report.  The only command that changes the reference."""
    from prt_bench.suite import reference

    try:
        dest = reference.update(suite, results / suite, report=report)
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    typer.echo(f"reference of {suite}: {dest}" + (f"; report: reports/{suite}.pdf" if report else ""))


def key_values(text: str, hint: str) -> dict:
    """``a=1,b=x`` -> {"a": 1, "b": "x"} (numbers as numbers, true/false as booleans)."""
    import yaml

    out = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=hint)
        out[key.strip()] = yaml.safe_load(value.strip()) if value.strip() else ""
    return out
