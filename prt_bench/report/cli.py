"""`prt-bench report`, `prt-bench submit`, `prt-bench leaderboard` (light imports only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def report(
    results: Annotated[Path, typer.Argument(help="A results folder, e.g. results/reference/mini (cells/*.json, table.csv, profile/*.json).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="PDF to write (default reports/<results folder name>.pdf); the Markdown tables go next to it as .md.")] = None,
) -> None:
    """Build the PDF report of a results folder, with the same tables as Markdown."""
    from rich.console import Console
    from rich.markup import escape

    from prt_bench.report.build import build_report, report_summary

    console = Console(stderr=True)
    if not results.is_dir():
        raise typer.BadParameter(f"{results} is not a folder", param_hint="RESULTS")
    with console.status(f"building the report of {results}"):
        try:
            pdf = build_report(results, out)
        except (FileNotFoundError, ValueError) as e:
            console.print(f"[red]error:[/] {escape(str(e))}")
            raise typer.Exit(2) from e
    info = report_summary(pdf)
    console.print(f"report: {pdf} ({info['pages']} pages); tables: {info['markdown']}")


def submit(
    results: Annotated[Path, typer.Argument(help="A results folder, e.g. results/local/mini.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Submission JSON to write.")],
    name: Annotated[Optional[str], typer.Option(help="Leaderboard name (letters, digits, . _ -); default: the results folder's name.")] = None,
    variant: Annotated[Optional[str], typer.Option(help="The method variant the submission declares (what you changed); default: prt-bench's own methods.")] = None,
    variant_description: Annotated[str, typer.Option(help="What the variant is, in words.")] = "",
    variant_code: Annotated[Optional[str], typer.Option(help="Where the variant's code is (URL and commit).")] = None,
) -> None:
    """Pack a results folder (every evaluation cell with its per-sample records) into a
    leaderboard submission, verified against the suite's expansion before it is written."""
    from rich.console import Console
    from rich.markup import escape

    from prt_bench.io import atomic_write_json
    from prt_bench.report.leaderboard import SubmissionError, pack_submission

    console = Console(stderr=True)
    try:
        declared = None
        if variant is not None:
            declared = {"name": variant, "description": variant_description,
                        **({"code": variant_code} if variant_code else {})}
        sub = pack_submission(results, name=name, variant=declared)
    except SubmissionError as e:
        console.print(f"[red]cannot submit:[/] {escape(str(e))}")
        raise typer.Exit(2) from e
    atomic_write_json(out, sub).chmod(0o644)
    console.print(f"submission: {out} (suite {sub['suite']}, name {sub['name']}, {len(sub['cells'])} cells, "
                  f"{sub['checksum']})")


def leaderboard(
    submissions: Annotated[Path, typer.Argument(help="Folder of submission JSON files.")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where leaderboard.md, leaderboard.csv and submissions/ go.")] = Path("results"),
    strict: Annotated[bool, typer.Option(help="Exit with status 1 when any submission is rejected or listed apart.")] = False,
) -> None:
    """Verify every submission in a folder against its suite and write the leaderboard
    (Markdown and CSV): complete ones ranked, incomplete ones listed apart, the rest rejected."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from prt_bench.report.leaderboard import build_leaderboard

    console = Console(stderr=True)
    try:
        outcome = build_leaderboard(submissions, out_dir)
    except FileNotFoundError as e:
        console.print(f"[red]error:[/] {escape(str(e))}")
        raise typer.Exit(2) from e
    for fname, sub in outcome.accepted:
        console.print(f"[green]ranked[/] {fname}: {sub['name']} ({sub['suite']}, {len(sub['cells'])} cells)")
    for fname, sub, why in outcome.apart:
        console.print(f"[yellow]listed apart[/] {fname}: {sub['name']}: {escape('; '.join(why))}")
    if outcome.rejected:
        table = Table("file", "why it was rejected", title=f"{len(outcome.rejected)} rejected", show_lines=True)
        for fname, reasons in outcome.rejected:
            table.add_row(fname, "\n".join(reasons))
        console.print(table)
    console.print("wrote " + ", ".join(str(p) for p in outcome.written))
    if strict and (outcome.rejected or outcome.apart):
        raise typer.Exit(1)


def leaderboard_verify(
    submission: Annotated[Path, typer.Argument(help="A submission JSON file.")],
    cells: Annotated[Optional[int], typer.Option(help="How many evaluation cells to re-run, sampled at random (with --seed); all of them with --all.")] = 3,
    all_cells: Annotated[bool, typer.Option("--all", help="Re-run every cell of the submission (the whole suite).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the sample of cells.")] = 0,
    cell: Annotated[Optional[list[str]], typer.Option(
        "--cell", help="Re-run this cell (its id, or a unique prefix of it); repeatable.  Instead of a sample.")] = None,
    work: Annotated[Optional[Path], typer.Option(help="Where the re-run's results and checkpoints go (default: a temporary folder).")] = None,
    cache: Annotated[Optional[Path], typer.Option(help="Cache of built bases (default: the repository's .cache/).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Cells at once on the CPU (default: as prt-bench run).")] = None,
    within_error: Annotated[bool, typer.Option(
        "--within-error", help="Accept a cell whose primary metric is within its 95 % sampling error of the "
        "submission's (another CPU's bits).")] = False,
) -> None:
    """Re-run sampled cells of a submission here, at the thread count it records, and compare each
    with it: every metric and the hash of the per-sample records, and for a cell that differs, how
    many standard errors its primary metric moved.  Exit 1 unless every re-run cell reproduces the
    submission (with --within-error: or agrees with it within its sampling error)."""
    import os
    import tempfile

    from rich.console import Console
    from rich.markup import escape

    from prt_bench.report.leaderboard import SubmissionError, parse_submission, verify_submission

    console = Console(stderr=True)
    if cell and all_cells:
        console.print("[red]error:[/] --cell and --all ask for different cells: give one of them")
        raise typer.Exit(2)
    sub, err = parse_submission(submission.read_bytes())
    if err:
        console.print(f"[red]error:[/] {escape(err)}")
        raise typer.Exit(2)
    with tempfile.TemporaryDirectory(prefix="prt-bench-verify-") as tmp:
        try:
            found = verify_submission(sub, None if all_cells else cells, seed=seed, work=work or Path(tmp),
                                      cache=cache, workers=workers or max(1, min(4, os.cpu_count() or 1)),
                                      named=cell or ())
        except SubmissionError as e:
            console.print(f"[red]cannot verify:[/] {escape(str(e))}")
            raise typer.Exit(2) from e
    for r in found:
        mark = "[green]reproduced[/]" if r.reproduced else "[red]differs[/]"
        where = "within" if r.within_error() else "beyond"
        error = "" if r.reproduced else (" (its error unknown)" if r.z is None else
                                         f" ({r.z:.2f} σ: {where} its sampling error)")
        console.print(f"{mark} {r.cell_id} {escape(r.label)}"
                      + ("" if r.reproduced else ": " + escape("; ".join(r.differences)) + error))
    ok = sum(r.reproduced for r in found)
    near = sum(r.within_error() and not r.reproduced for r in found)
    console.print(f"{ok} of {len(found)} re-run cells reproduce {submission.name}"
                  + (f"; {near} more agree within their sampling error" if near else ""))
    if ok + (near if within_error else 0) != len(found):
        raise typer.Exit(1)


def export_clip_benchmark(
    results: Annotated[Path, typer.Argument(help="A results folder, e.g. results/reference/mini.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for one CLIP_benchmark JSON per vision cell.")],
) -> None:
    """Write the vision cells in CLIP_benchmark's result format (``clip_benchmark build`` reads them)."""
    from prt_bench.report.export import export_clip_benchmark as export

    try:
        written = export(results, out)
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    typer.echo(f"{len(written)} CLIP_benchmark results in {out}")
