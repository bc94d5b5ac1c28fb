"""Reports (PDF + Markdown) and the leaderboard.  Imports stay light: matplotlib and pypdf
load only when a report is built."""

from __future__ import annotations

import os
from pathlib import Path


def build_report(results_dir: str | os.PathLike, out_pdf: str | os.PathLike | None = None) -> Path:
    """Build the PDF report of a results folder and the Markdown tables next to it."""
    from prt_bench.report.build import build_report as _build

    return _build(results_dir, out_pdf)


__all__ = ["build_report"]
