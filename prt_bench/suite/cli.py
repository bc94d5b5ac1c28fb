"""`prt-bench run`: run a whole suite (light imports only; the work is in `runner`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def run(
    suite: str = typer.Option("mini", "--suite", help="A suite name (suites/<name>.yaml) or a path to a suite file."),
    results: Path = typer.Option(Path("results"), "--results", help="Results root: cells go to DIR/<suite>/cells/."),
    runs: Path = typer.Option(Path("runs"), "--runs", help="Where trained checkpoints go (DIR/<suite>/<cell_id>/)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Cache of the mini world and tiny bases "
                                         "(default: .cache/ in the repository)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the matrix and what is done; touch no model."),
    only: Optional[str] = typer.Option(None, "--only", help="Run only cells whose label or id matches (globs or substrings, comma-separated), with the training they need."),
    executor: str = typer.Option("local", "--executor", help="local (this machine) or ray."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address (default: start a local one)."),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="GPU ids for the local executor, e.g. 0,1 "
                                       "(default: all visible; 'none': CPU in this process)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="CPU only: cells run at once, each in its own "
                                          "process (default: one per CPU core, at most 4; 1: one after the other "
                                          "in this process)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Build the report at the end."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress display."),
    profile: bool = typer.Option(True, "--profile/--no-profile", help="Measure the cost profile (FT vs PRT vs "
                                 "EFT, seconds per modality) into DIR/<suite>/profile/, unless it is there."),
) -> None:
    """Run a suite: train every training cell once, evaluate the transfer matrix, write one
    JSON per cell and the table, build the report.  Resumable: done cells are skipped."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from rich.console import Console

    from prt_bench.suite.runner import RunOptions, run_suite
    from prt_bench.suite.schema import SuiteError

    gpu_list = None if gpus is None else ([] if gpus.strip().lower() in ("none", "") else
                                          [g.strip() for g in gpus.split(",") if g.strip()])
    import sys

    console = Console(file=sys.stderr)  # this stream, not one a running cell redirects
    if workers is None:
        workers = max(1, min(4, os.cpu_count() or 1))
    options = RunOptions(results=results, runs=runs, cache=cache, executor=executor, ray_address=ray_address,
                         gpus=gpu_list, workers=workers, only=only, dry_run=dry_run, report=report,
                         progress=progress, profile=profile)
    try:
        summary = run_suite(suite, options, console)
    except SuiteError as e:
        console.print(f"[red]suite error[/red]: {e}")
        raise typer.Exit(2)
    if dry_run:
        return
    console.print(f"suite {summary.suite}: {summary.total} cells, {summary.already_done} already done, "
                  f"{len(summary.ran)} run now, {len(summary.failed)} failed, in {summary.wall_s:.1f} s")
    for cell_id, why in summary.failed.items():
        console.print(f"  [red]failed[/red] {cell_id}: {why}")
    typer.echo(f"results: {summary.results_dir}/cells/  table: {summary.table}")
    if summary.report:
        typer.echo(f"report: {summary.report}")
    if summary.failed:
        raise typer.Exit(1)
