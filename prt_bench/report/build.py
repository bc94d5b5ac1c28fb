"""`build_report(results_dir, out_pdf)`: the PDF report and, next to it, the same tables as Markdown.

Sections, in order: title page, contents, the world card (the preconditions, measured), claims
checklist, then per task the results table,
transfer heatmaps, scenario bars and entropy ablation, then cost, then every result.  A
section with nothing to show says "No data" rather than disappearing, so reports of
different suites have the same shape.  The PDF carries an outline (bookmarks) per section.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from prt_bench.io import atomic_write_text, git_commit
from prt_bench.report.card import world_card
from prt_bench.report.claims import FAIL, NO_DATA, PASS, TOL_ABS, check_claims
from prt_bench.report.stats import RESAMPLES
from prt_bench.report.results import Items, Results, load_results
from prt_bench.report.tables import (Lookup, ablation_table, cell_cost_table, cost_table, lam_table, long_table,
                                     main_table, ratio_table, same_base_table, to_markdown)

SAME_BASE = ("The base alone, FT and PRT (its reward on the base it was trained on, eq. 10) on the same problems; "
             "each difference is paired problem by problem: mean [95 % bootstrap CI] and the exact paired test's p.")
CELL_COSTS = ("As each cell ran, in its own process: wall seconds, CPU seconds over every thread of the process "
              "(cells trained in several processes count the launcher's only), peak memory; – where the record "
              "predates the field.")
CARD = ("The preconditions this world is designed to, measured on its own cells (prt_bench/report/card.py): "
        "each a paired difference on the primary metric at the main α, mean [95 % CI]; a world is tuned until "
        "they hold, then the claims below are read.  –: shown, not decided.")
HOLDS = {True: "yes", False: "NO", None: "–"}
STATUS_COLOUR = {PASS: "#c8e6c9", FAIL: "#ffcdd2", NO_DATA: "#eeeeee"}


def _title(task: str, modality: str) -> str:
    return f"{task} ({'language' if modality == 'lm' else modality})" if modality else task


def _environment_lines(res: Results) -> list[str]:
    envs = [c.get("environment") or {} for c in res.cells]
    commits = sorted({e.get("git_commit") for e in envs if e.get("git_commit")})
    packages: dict[str, set[str]] = {}
    for e in envs:
        for k, v in (e.get("packages") or {}).items():
            packages.setdefault(k, set()).add(str(v))
    hw = sorted({f"{e.get('platform', '?')}, {e.get('machine', '?')}, {e.get('cpu_count', '?')} CPU cores, "
                 f"device {e.get('device', '?')}" + (f" ({e['gpu']})" if e.get("gpu") else "") for e in envs})
    # when the cells finished, as they recorded it (a file's date is the checkout's, not the run's)
    finished = sorted(t for c in res.cells if isinstance(t := (c.get("timing") or {}).get("finished_at"), str))
    span = "not recorded in these cells"
    if finished:
        lo, hi = (f"{t[:10]} {t[11:16]} UTC" for t in (finished[0], finished[-1]))
        span = (lo if lo == hi else f"{lo} to {hi}") + ("" if len(finished) == len(res.cells)
                                                        else f" ({len(finished)} of {len(res.cells)} recorded it)")
    tasks = sorted(set(res.rows["task"].dropna())) if not res.rows.empty else []
    lines = [
        f"Suite: {res.suite}",
        f"Report built: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"Results: {res.root} ({len(res.rows)} evaluation cells of {len(res.cells)} cell files; finished {span})",
        f"Tasks: {', '.join(tasks) or 'none'}",
        f"Git commit of the results: {', '.join(c[:12] if len(commits) > 1 else c for c in commits) or 'unknown'}"
        + ("  (several commits!)" if len(commits) > 1 else ""),
        f"Git commit of this report: {git_commit() or 'unknown'}",
        "Hardware: " + ("; ".join(hw) if hw else "unknown"),
        "Packages: " + (", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in sorted(packages.items())) or "unknown"),
    ]
    for mod, prof in sorted(res.profiles.items()):
        lines.append(f"Cost profile ({mod}): device {prof.get('device', '?')}")
    lines.append("Error bars: std over seeds when there are several seeds, else the evaluator's standard error "
                 "(lm-eval's *_stderr), else the binomial standard error from the cell's n_samples, else none "
                 "(a bare value).")
    lines.append(f"Tables: {VALUES}.")
    lines.append(f"Claims: each comparison is decided on the 95 % CI of the difference of two methods on the same "
                 f"items (paired bootstrap, {RESAMPLES:,} resamples) with an exact paired test's p-value beside it; "
                 f"'≈' means the CI lies within ±{TOL_ABS}.")
    lines.extend(f"Warning: {w}" for w in res.warnings)
    return lines


VALUES = ("value [95 % CI] (bootstrap over the test items, and the seeds when several) where the cells kept "
          "per-sample records, else value ± error bar (std over seeds, else the evaluator's stderr, else binomial "
          "from n_samples)")


class _Sections:
    """Collects pages and remembers where each section starts (for contents and bookmarks)."""

    def __init__(self, pdf):
        self.pdf = pdf
        self.n_pages = 0
        self.entries: list[tuple[str, int, int]] = []  # (title, level, page index)

    def section(self, title: str, level: int = 0) -> None:
        self.entries.append((title, level, self.n_pages))

    def add(self, figs) -> None:
        import matplotlib.pyplot as plt

        for fig in figs if isinstance(figs, list) else [figs]:
            self.pdf.savefig(fig)
            plt.close(fig)
            self.n_pages += 1


def _cards(lk: Lookup) -> dict[str, pd.DataFrame]:
    """task -> its world card, for the tasks that have one."""
    cards = {}
    for _, task in lk.tasks():
        rows = world_card(lk, task)
        if rows:
            cards[task] = pd.DataFrame([{**r, "holds": HOLDS[r["holds"]]} for r in rows])
    return cards


def _markdown(res: Results, lk: Lookup, claims, env_lines: list[str], merges=(), items=None,
              same_base: dict[str, pd.DataFrame] | None = None, cards: dict[str, pd.DataFrame] | None = None) -> str:
    out = [f"# prt-bench report — suite {res.suite}\n", *[f"- {line}" for line in env_lines], ""]
    for task, card in (cards or {}).items():
        out.append(f"## World card: {task}\n\n{CARD}\n")
        out.append(to_markdown(card) + "\n")
    out.append("## Claims checklist\n")
    out.append(to_markdown(pd.DataFrame([{"claim": c.title, "result": c.status.upper(), "rule": c.rule,
                                          "summary": c.summary} for c in claims])))
    for c in claims:
        out.append(f"\n**{c.title}** — {c.status.upper()}\n")
        out.extend(f"- {'✓' if ok else '✗'} {text.rstrip(' ✓✗')}" for ok, text in c.checks)
        if not c.checks:
            out.append("- no data")
    for modality, task in lk.tasks():
        out.append(f"\n## Results: {_title(task, modality)}\n")
        out.append(f"Metric `{lk.metric(task)}`; {VALUES}; PRT at the suite's main α.\n")
        out.append(to_markdown(main_table(lk, task)))
        same = (same_base or {}).get(task)
        if same is not None and not same.empty:
            out.append(f"\n### On one base, every metric: {task}\n")
            out.append(f"{SAME_BASE}\n")
            out.append(to_markdown(same))
        out.append(f"\n### Entropy ablation: {task}\n")
        out.append(to_markdown(ablation_table(lk, task)))
        if lk.lam_sweeps(task):
            out.append(f"\n### Reward strength at inference (λ of eq. 10): {task}\n")
            out.append(to_markdown(lam_table(lk, task)))
    if not lk.tasks():
        out.append("\n## Results\n\n_no data_\n")
    for m in merges:
        from prt_bench.report.merges import merge_table

        out.append(f"\n## Reward arithmetic: {m.name}\n")
        out.append(f"Rewards trained from {m.source} on {', '.join(m.tasks)}, combined on each target and evaluated "
                   "on each task (each task's primary metric).\n")
        out.append(to_markdown(merge_table(m, items)))
    out.append("\n## Cost\n")
    if not res.profiles:
        out.append("_no data_ (no profile/*.json)\n")
    for mod, prof in sorted(res.profiles.items()):
        out.append(f"\n### Cost: {mod} (device {prof.get('device', '?')})\n")
        out.append(to_markdown(cost_table(prof)))
        if prof.get("ratios"):
            out.append("\n" + to_markdown(ratio_table(prof)))
    out.append("\n### Cost of each cell\n")
    out.append(f"{CELL_COSTS}\n")
    out.append(to_markdown(cell_cost_table(res.cells)))
    out.append("\n## Appendix: every result\n")
    out.append(to_markdown(long_table(res.agg)))
    return "\n".join(out)


def build_report(results_dir: str | os.PathLike, out_pdf: str | os.PathLike | None = None) -> Path:
    """Write the PDF report of a results folder (and `<same name>.md`); return the PDF path.

    `out_pdf` defaults to `reports/<results folder name>.pdf` under the current directory.
    """
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages
    from pypdf import PdfReader, PdfWriter

    from prt_bench.report import figures as F

    res = load_results(results_dir)
    out_pdf = Path(out_pdf) if out_pdf else Path("reports") / f"{Path(results_dir).resolve().name}.pdf"
    if out_pdf.suffix.lower() != ".pdf":
        raise ValueError(f"--out must name a .pdf file, got {out_pdf}")
    out_pdf.parent.mkdir(parents=True, exist_ok=True)

    from prt_bench.report.merges import merge_claim, merge_figure, merge_sets, merge_table

    items = Items(res)
    lk = Lookup(res.agg, items)
    merges = merge_sets(res)
    claims = check_claims(lk) + [merge_claim(m, items) for m in merges]
    env_lines = _environment_lines(res)

    body = io.BytesIO()
    cards = _cards(lk)
    with PdfPages(body) as pdf:
        s = _Sections(pdf)
        for task, card in cards.items():
            s.section(f"World card: {task}")
            s.add(F.table_pages(f"World card: {task}", card, CARD, fontsize=8))
        s.section("Claims checklist")
        summary = pd.DataFrame([{"claim": c.title, "result": c.status.upper(), "numbers": c.summary} for c in claims])
        colours = {(i, 1): STATUS_COLOUR[c.status] for i, c in enumerate(claims)}
        fig = F.page("Claims checklist", f"decided on 95 % CIs of paired differences; '≈': the CI lies within "
                                         f"±{TOL_ABS}; details on the next page(s)")
        ax = fig.add_axes([0.04, 0.50, 0.92, 0.34])
        F.draw_table(ax, summary, fontsize=11, colours=colours, max_row=0.14)
        rules = [f"{c.title}: {c.rule}" for c in claims]
        fig.text(0.04, 0.44, "How each is decided:\n" + "\n".join(_wrap([f"•  {r}" for r in rules], 150)),
                 fontsize=10, va="top", linespacing=1.6)
        s.add(fig)
        detail = []
        for c in claims:
            detail.append(f"{c.title} — {c.status.upper()}")
            detail.extend(f"   {text}" for _, text in c.checks)
            if not c.checks:
                detail.append("   no data: no cells to decide it")
            detail.append("")
        s.add(F.text_page("Claims checklist: the numbers", detail, size=9, width=165))

        tasks = lk.tasks()
        same_base: dict[str, pd.DataFrame] = {}
        if not tasks:
            for name in ("Results", "Transfer heatmaps", "Scenarios", "Entropy ablation"):
                s.section(name)
                s.add(F.no_data_page(name, "this results folder has no finished evaluation cells"))
        for modality, task in tasks:
            t = _title(task, modality)
            s.section(f"Results: {t}")
            s.add(F.table_pages(f"Results: {t}", main_table(lk, task),
                                f"metric: {lk.metric(task)}; value [95 % CI], else ± error bar ({F.ERRBARS}); "
                                "PRT at the suite's main α; –: not run"))
            same = same_base[task] = same_base_table(lk, task)  # paired statistics: computed once, drawn twice
            if not same.empty:
                s.add(F.table_pages(f"On one base, every metric: {t}", same, SAME_BASE, fontsize=8))
            s.section(f"Transfer heatmaps: {t}", 1)
            figs = F.heatmap_figures(lk, task, f"Transfer heatmaps: {t}")
            s.add(figs or F.no_data_page(f"Transfer heatmaps: {t}", "no PRT or EFT transfer cells"))
            s.section(f"Scenarios: {t}", 1)
            fig = F.scenario_figure(lk, task, f"Scenarios: {t}")
            s.add(fig or F.no_data_page(f"Scenarios: {t}", "no transfer cells with a scenario"))
            s.section(f"Entropy ablation: {t}", 1)
            fig = F.ablation_figure(lk, task, f"Entropy ablation: {t}")
            if fig is None:
                s.add(F.no_data_page(f"Entropy ablation: {t}", "fewer than two α values were run"))
            else:
                s.add(fig)
                s.add(F.table_pages(f"Entropy ablation: {t} (table)", ablation_table(lk, task),
                                    f"metric: {lk.metric(task)}; reward only = softmax of the reward alone", fontsize=9))
            fig = F.lam_figure(lk, task, f"Reward strength at inference: {t}")
            if fig is not None:
                s.section(f"Reward strength at inference: {t}", 1)
                s.add(fig)
                s.add(F.table_pages(f"Reward strength at inference: {t} (table)", lam_table(lk, task),
                                    f"metric: {lk.metric(task)}; PRT at the main α, the reward unchanged", fontsize=9))

        for m in merges:
            title = f"Reward arithmetic: {m.name}"
            s.section(title)
            s.add(F.table_pages(title, merge_table(m, items),
                                f"rewards trained from {m.source} on {', '.join(m.tasks)}, combined on each target "
                                "and evaluated on each task (primary metrics); –: not run", fontsize=8))
            fig = merge_figure(m, items, f"{title}: task against task")
            if fig is not None:
                s.add(fig)

        s.section("Cost")
        if not res.profiles:
            s.add(F.no_data_page("Cost", "no profile/*.json in the results folder (prt-bench profile lm|vision --out)"))
        for mod, prof in sorted(res.profiles.items()):
            title = f"Cost: {'language' if mod == 'lm' else mod}"
            fig = F.cost_figure(prof, title)
            s.add(fig or F.no_data_page(title, "the profile has no rows"))
            s.add(F.table_pages(f"{title} (table)", cost_table(prof).reset_index(drop=True)))
            if prof.get("ratios"):
                s.add(F.table_pages(f"{title}: ratios and their physical limits", ratio_table(prof),
                                    "limit: what the single models measured in the same run allow "
                                    "(e.g. PRT/FT(target) = (T + S) / T); vs limit: how far above it"))
        s.add(F.table_pages("Cost of each cell", cell_cost_table(res.cells), CELL_COSTS, rows_per_page=28, fontsize=8))

        s.section("Appendix: every result")
        s.add(F.table_pages("Appendix: every result", long_table(res.agg),
                            "aggregated over seeds; value ± error bar", rows_per_page=24, fontsize=8.5))

    # Title and contents go first; they are drawn last because contents needs the page numbers.
    front = io.BytesIO()
    with PdfPages(front) as pdf:
        fig = F.page(f"prt-bench report — suite {res.suite}",
                     "Portable Reward Tuning (Chijiwa et al., ICML 2025) and its baselines")
        fig.text(0.04, 0.84, "\n".join(_wrap(env_lines, 120)), fontsize=10.5, va="top", linespacing=1.6)
        pdf.savefig(fig)
        plt.close(fig)
        n_contents = 1
        while True:  # the contents may need more than one page, which moves every page number
            lines = [("    " * lvl) + f"{title}  ····  page {page + 2 + n_contents}" for title, lvl, page in s.entries]
            figs = F.text_page("Contents", lines, size=10, width=140)
            if len(figs) == n_contents:
                break
            for fig in figs:
                plt.close(fig)
            n_contents = len(figs)
        for fig in figs:
            pdf.savefig(fig)
            plt.close(fig)

    writer = PdfWriter()
    front_reader = PdfReader(front)
    for p in front_reader.pages:
        writer.add_page(p)
    n_front = len(front_reader.pages)
    for p in PdfReader(body).pages:
        writer.add_page(p)
    writer.add_outline_item(title="Title", page_number=0)
    writer.add_outline_item(title="Contents", page_number=1)
    parent = None
    for title, lvl, page in s.entries:
        item = writer.add_outline_item(title=title, page_number=page + n_front, parent=parent if lvl else None)
        if lvl == 0:
            parent = item
    writer.add_metadata({"/Title": f"prt-bench report — suite {res.suite}", "/Creator": "prt-bench"})
    fd, tmp = tempfile.mkstemp(dir=out_pdf.parent, prefix=f".{out_pdf.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            writer.write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_pdf)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    md = atomic_write_text(out_pdf.with_suffix(".md"), _markdown(res, lk, claims, env_lines, merges, items, same_base, cards))
    md.chmod(0o644)
    return out_pdf


def _wrap(lines: list[str], width: int) -> list[str]:
    import textwrap

    out: list[str] = []
    for line in lines:
        out.extend(textwrap.wrap(line, width=width, subsequent_indent="      ") or [""])
    return out


def report_summary(out_pdf: Path) -> dict[str, Any]:
    from pypdf import PdfReader

    r = PdfReader(out_pdf)
    return {"pages": len(r.pages), "markdown": str(out_pdf.with_suffix(".md"))}
