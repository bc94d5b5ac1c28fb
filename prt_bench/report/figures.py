"""The report's figures: one function per kind of figure, each returning a matplotlib Figure
on an A4-landscape page (or None when there is nothing to draw).

Heatmaps are rasterised (they become images in the PDF); bars and lines stay vector.
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from prt_bench.report.results import fmt_alpha  # noqa: E402
from prt_bench.report.tables import Lookup  # noqa: E402

PAGE = (11.69, 8.27)  # A4 landscape, inches
ERRBARS = "std over seeds, else the evaluator's stderr, else binomial from n_samples"
COLORS = {"base alone": "#9e9e9e", "EFT": "#f28e2b", "PRT": "#4e79a7", "FT (target)": "#59a14f",
          "reward only": "#e15759"}

# seaborn's look without importing seaborn (its import pulls in scipy.stats: seconds on a busy CPU).
plt.style.use("seaborn-v0_8-whitegrid")
plt.rcParams.update({"font.size": 10, "axes.titlesize": 12, "axes.labelsize": 10, "pdf.fonttype": 42})


def page(title: str, subtitle: str | None = None) -> plt.Figure:
    fig = plt.figure(figsize=PAGE)
    # Drawn first (lowest zorder), so the title is also the first line of the page's text.
    fig.text(0.04, 0.955, title, fontsize=17, weight="bold", va="top", zorder=-10)
    if subtitle:
        fig.text(0.04, 0.905, "\n".join(textwrap.wrap(subtitle, 150)), fontsize=10, color="#444444", va="top",
                 zorder=-9)
    return fig


def text_page(title: str, lines: list[str], subtitle: str | None = None, size: float = 10.0,
              width: int = 150, mono: bool = False) -> list[plt.Figure]:
    """Lines of text, wrapped and spread over as many pages as they need."""
    wrapped: list[str] = []
    for line in lines:
        wrapped.extend(textwrap.wrap(line, width=width, subsequent_indent="    ") or [""])
    per_page = max(1, int(6.6 * 72 / (size * 1.45)))
    figs = []
    for start in range(0, max(len(wrapped), 1), per_page):
        fig = page(title if start == 0 else f"{title} (continued)", subtitle if start == 0 else None)
        fig.text(0.04, 0.86, "\n".join(wrapped[start:start + per_page]), fontsize=size, va="top",
                 family="monospace" if mono else None, linespacing=1.45)
        figs.append(fig)
    return figs


def no_data_page(title: str, why: str) -> plt.Figure:
    fig = page(title)
    fig.text(0.5, 0.5, f"No data: {why}", ha="center", va="center", fontsize=14, color="#666666")
    return fig


def draw_table(ax: plt.Axes, df: pd.DataFrame, fontsize: float = 9.5, colours: dict | None = None,
               max_row: float = 0.07) -> None:
    """A plain table filling `ax`; column widths follow their longest entry."""
    ax.axis("off")
    cells = [[str(v) for v in row] for row in df.itertuples(index=False)]
    lens = [max([len(str(c))] + [len(r[i]) for r in cells]) for i, c in enumerate(df.columns)]
    total = sum(lens)
    widths = [max(l / total, 0.04) for l in lens]
    s = sum(widths)
    widths = [w / s for w in widths]
    n = len(cells) + 1
    row_h = min(max_row, 1.0 / n)  # in axes fractions
    table = ax.table(cellText=cells or [["–"] * len(df.columns)], colLabels=list(df.columns),
                     colWidths=widths, loc="upper center", cellLoc="center",
                     bbox=[0, 1 - row_h * n, 1, row_h * n])
    table.auto_set_font_size(False)
    table.set_fontsize(fontsize)
    for (r, c), cell in table.get_celld().items():
        cell.set_edgecolor("#bbbbbb")
        if r == 0:
            cell.set_facecolor("#e8e8e8")
            cell.set_text_props(weight="bold")
        elif colours and (r - 1, c) in colours:
            cell.set_facecolor(colours[(r - 1, c)])


def table_pages(title: str, df: pd.DataFrame, subtitle: str | None = None, rows_per_page: int = 20,
                fontsize: float = 9.5, colours: dict | None = None) -> list[plt.Figure]:
    figs = []
    for start in range(0, max(len(df), 1), rows_per_page):
        part = df.iloc[start:start + rows_per_page]
        fig = page(title if start == 0 else f"{title} (continued)", subtitle)
        ax = fig.add_axes([0.04, 0.06, 0.92, 0.78])
        sub = None
        if colours:
            sub = {(r - start, c): col for (r, c), col in colours.items() if start <= r < start + rows_per_page}
        draw_table(ax, part, fontsize=fontsize, colours=sub)
        figs.append(fig)
    return figs


def _matrix(lk: Lookup, task: str, fn) -> pd.DataFrame:
    sources, targets = lk.sources(task), lk.targets(task)
    targets = [t for t in targets if any(s_ == s and t_ == t for s in sources for s_, t_, _ in lk.pairs(task))]
    data = np.full((len(sources), len(targets)), np.nan)
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            v = fn(s, t)
            if v is not None:
                data[i, j] = v
    return pd.DataFrame(data, index=sources, columns=targets)


def _draw_heatmap(fig: plt.Figure, rect: list[float], name: str, m: pd.DataFrame, cmap: str, lo: float, hi: float,
                  ylabel: bool) -> None:
    ax = fig.add_axes(rect)
    ax.grid(False)
    ax.set_facecolor("#eeeeee")  # cells that were not run
    data = m.to_numpy()
    im = ax.imshow(data, cmap=cmap, vmin=lo, vmax=hi, aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8)
    cell_in = rect[2] * PAGE[0] / max(data.shape[1], 1)  # width of one cell, inches
    size, digits = (10, 3) if cell_in >= 0.75 else (8.5, 3) if cell_in >= 0.55 else (8, 2)
    for r in range(data.shape[0]):
        for c in range(data.shape[1]):
            v = data[r, c]
            if np.isnan(v):
                ax.text(c, r, "–", ha="center", va="center", fontsize=size, color="#777777")
            else:
                dark = sum(im.cmap(im.norm(v))[:3]) < 1.5
                ax.text(c, r, f"{v:.{digits}f}", ha="center", va="center", fontsize=size,
                        color="white" if dark else "black")
    ax.set_xticks(range(data.shape[1]), [str(c) for c in m.columns])
    ax.set_yticks(range(data.shape[0]), [str(i) for i in m.index])
    ax.set_title(name, fontsize=12, weight="bold")
    ax.set_xlabel("target")
    ax.set_ylabel("source" if ylabel else "")
    ax.tick_params(axis="x", rotation=30, labelsize=9)
    ax.tick_params(axis="y", rotation=0, labelsize=9)
    for lab in ax.get_xticklabels():
        lab.set_horizontalalignment("right")


def heatmap_figures(lk: Lookup, task: str, title: str) -> list[plt.Figure]:
    """Transfer heatmaps, source rows × target columns: PRT, EFT, and PRT's gain over the
    target alone.  Side by side on one page when they fit, else one page each."""

    def prt(s, t):
        v = lk.prt(task, s, t)
        return v and v.mean

    def eft(s, t):
        v = lk.eft(task, s, t)
        return v and v.mean

    def gain(s, t):
        p, b = lk.prt(task, s, t), lk.base_alone(task, t)
        return p.mean - b.mean if p and b else None

    alphas = sorted({lk.main_alpha(task, s) for s in lk.sources(task)})
    prt_name = "PRT (α = " + ", ".join(fmt_alpha(a) for a in alphas) + ")" if alphas else "PRT"
    panels = [(prt_name, _matrix(lk, task, prt), "viridis"),
              ("EFT", _matrix(lk, task, eft), "viridis"),
              ("PRT − target alone", _matrix(lk, task, gain), "RdBu")]
    panels = [p for p in panels if p[1].size and not np.isnan(p[1].to_numpy()).all()]
    if not panels:
        return []
    acc = np.concatenate([m.to_numpy().ravel() for _, m, cmap in panels if cmap == "viridis"])
    acc = acc[~np.isnan(acc)]
    vmin, vmax = (float(acc.min()), float(acc.max())) if acc.size else (0.0, 1.0)
    if vmax - vmin < 1e-6:
        vmin, vmax = vmin - 0.05, vmax + 0.05
    subtitle = (f"metric: {lk.metric(task)}; rows: source (where the reward / FT model was trained), "
                "columns: target base at inference; –: not run")
    n_src, n_tgt = panels[0][1].shape
    left = min(0.2, 0.03 + 0.0075 * max(len(str(x)) for x in panels[0][1].index))  # room for source names
    height = min(0.55, 0.12 + 0.07 * n_src)
    limits = [(vmin, vmax) if cmap == "viridis" else
              (-max(float(np.nanmax(np.abs(m.to_numpy()))), 1e-3), max(float(np.nanmax(np.abs(m.to_numpy()))), 1e-3))
              for _, m, cmap in panels]
    if n_tgt <= 4 and n_src <= 6:
        fig = page(title, subtitle)
        width = (0.97 - left) / len(panels)
        for i, ((name, m, cmap), (lo, hi)) in enumerate(zip(panels, limits)):
            _draw_heatmap(fig, [left + i * width, 0.84 - height, width - 0.08, height], name, m, cmap, lo, hi, i == 0)
        return [fig]
    figs = []
    for i, ((name, m, cmap), (lo, hi)) in enumerate(zip(panels, limits)):
        fig = page(title if i == 0 else f"{title} (continued)", subtitle)
        _draw_heatmap(fig, [left, 0.84 - height, 0.9 - left, height], name, m, cmap, lo, hi, True)
        figs.append(fig)
    return figs


def _bar_groups(ax, groups: list[str], series: dict[str, list], errs: dict[str, list]) -> None:
    names = list(series)
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(groups))
    for k, name in enumerate(names):
        vals = np.array([np.nan if v is None else v for v in series[name]], dtype=float)
        err = np.array([np.nan if e is None else e for e in errs[name]], dtype=float)
        pos = x - 0.4 + width * (k + 0.5)
        ax.bar(pos, np.nan_to_num(vals), width * 0.92, color=COLORS.get(name), label=name)
        has = ~np.isnan(err) & ~np.isnan(vals)
        if has.any():
            ax.errorbar(pos[has], vals[has], yerr=err[has], fmt="none", ecolor="#222222", capsize=3, elinewidth=1)
        for p, v, e in zip(pos, vals, err):
            if np.isnan(v):
                ax.text(p, 0.005, "n/a", ha="center", va="bottom", fontsize=8, color="#777777", rotation=90)
            else:  # above the error bar, so the two never overlap
                ax.text(p, v + (0 if np.isnan(e) else e) + 0.008, f"{v:.2f}", ha="center", va="bottom", fontsize=8.5)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, fontsize=9)


def scenario_figure(lk: Lookup, task: str, title: str) -> plt.Figure | None:
    """Like the paper's Figs. 2–4: per scenario, the target alone, EFT, PRT and FT of the target."""
    pairs = lk.pairs(task)
    scenarios: list[str] = []
    for _, _, sc in pairs:
        if sc not in scenarios:
            scenarios.append(sc)
    if not scenarios:
        return None
    fig = page(title, f"metric: {lk.metric(task)}; error bars: {ERRBARS}; "
                      "n/a: not run (EFT on its own base is FT)")
    ymax = 0.0
    axes = []
    # Panel widths follow how many transfers each scenario has, so every bar group gets the same room.
    counts = [sum(1 for _, _, c in pairs if c == sc) for sc in scenarios]
    unit = (0.93 - 0.03 * len(scenarios)) / sum(counts)
    x0 = 0.06
    for i, sc in enumerate(scenarios):
        ax = fig.add_axes([x0, 0.16, unit * counts[i], 0.62])
        x0 += unit * counts[i] + 0.03
        axes.append(ax)
        sel = [(s, t) for s, t, c in pairs if c == sc]
        groups = [f"{s}\n→ {t}" for s, t in sel]
        vals = {"base alone": [lk.base_alone(task, t) for _, t in sel],
                "EFT": [lk.eft(task, s, t) if s != t else None for s, t in sel],
                "PRT": [lk.prt(task, s, t) for s, t in sel],
                "FT (target)": [lk.ft_of(task, t) for _, t in sel]}
        series = {k: [v.mean if v else None for v in vs] for k, vs in vals.items()}
        errs = {k: [(v.err if v and not math.isnan(v.err) else None) for v in vs] for k, vs in vals.items()}
        _bar_groups(ax, groups, series, errs)
        ymax = max([ymax] + [v + (e or 0) for k in series for v, e in zip(series[k], errs[k]) if v is not None])
        ax.set_title((sc or "unlabelled").replace("_", " "), fontsize=12, weight="bold")
        if i == 0:
            ax.set_ylabel(lk.metric(task).split(",")[0])
    for ax in axes:
        ax.set_ylim(0, min(1.05, ymax * 1.15 + 0.02))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False, fontsize=11)
    return fig


def _panel_grid(fig: plt.Figure, n: int) -> list[tuple[plt.Axes, int]]:
    """``n`` panels, up to four a row, below a page's title: (axes, column) each."""
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    w, h = 0.92 / ncols, 0.74 / nrows
    out = []
    for k in range(n):
        r, c = divmod(k, ncols)
        out.append((fig.add_axes([0.06 + c * w, 0.86 - (r + 1) * h + 0.07, w - 0.05, h - 0.11]), c))
    return out


def _target_lines(ax: plt.Axes, lk: Lookup, task: str, target: str) -> None:
    """The target alone (dotted) and FT of the target (dash-dot), where they were run."""
    for name, v in (("base alone", lk.base_alone(task, target)), ("FT (target)", lk.ft_of(task, target))):
        if v:
            ax.axhline(v.mean, ls=":" if name == "base alone" else "-.", lw=1.6, color=COLORS[name], label=name)


def ablation_figure(lk: Lookup, task: str, title: str) -> plt.Figure | None:
    """Like the paper's Figs. 6–7: reward-only and PRT accuracy against α, one panel per target."""
    panels = []
    for source in lk.sources(task):
        alphas = sorted(set(lk.alphas(task, "prt", source)) | set(lk.alphas(task, "reward_only", source)))
        if len(alphas) < 2:
            continue
        targets = lk.swept_targets(task, source)
        panels += [(source, t, alphas) for t in targets]
        if not targets:  # only the reward alone was swept
            panels.append((source, None, alphas))
    if not panels:
        return None
    fig = page(title, f"metric: {lk.metric(task)}; entropy regulariser α of eq. 12 (categorical axis); "
                      "dotted: target alone; dash-dot: FT of the target")
    for k, ((source, target, alphas), (ax, c)) in enumerate(zip(panels, _panel_grid(fig, len(panels)))):
        x = np.arange(len(alphas))
        for name, fn, style, dx in (("PRT", lambda a: lk.prt(task, source, target, alpha=a) if target else None, "-o", -0.04),
                                    ("reward only", lambda a: lk.reward_only(task, source, a), "--s", 0.04)):
            vs = [fn(a) for a in alphas]
            y = np.array([v.mean if v else np.nan for v in vs])
            e = np.array([v.err if v and not math.isnan(v.err) else 0 for v in vs])
            if not np.isnan(y).all():  # dodged a little so equal values stay visible
                ax.errorbar(x + dx, y, yerr=e, fmt=style, color=COLORS[name], label=name, capsize=3, markersize=5)
        if target is not None:
            _target_lines(ax, lk, task, target)
        _finish_panel(fig, ax, k, c, [fmt_alpha(a) for a in alphas], "α",
                      f"{source} → {target}" if target else f"reward of {source}", lk.metric(task), ncol=4)
    return fig


def lam_figure(lk: Lookup, task: str, title: str) -> plt.Figure | None:
    """PRT against the reward's strength 1/λ at inference (eq. 10), one panel per transfer; EFT
    beside it where its implicit reward was swept too."""
    sweeps = lk.lam_sweeps(task)
    if not sweeps:
        return None
    fig = page(title, f"metric: {lk.metric(task)}; x: 1/λ, the reward's strength (categorical axis), the reward "
                      "unchanged; bars: 95 % CI where per-sample records exist, else the error bar; "
                      "dotted: target alone; dash-dot: FT of the target")
    for k, ((source, target, lams), (ax, c)) in enumerate(zip(sweeps, _panel_grid(fig, len(sweeps)))):
        lams = sorted(lams, reverse=True)  # weakest reward first
        x = np.arange(len(lams))
        curves = (("PRT", "-o", [lk.prt(task, source, target, lam=v) for v in lams]),
                  ("EFT", "--s", [lk.eft(task, source, target, lam=v) for v in lams]))
        for dx, (name, style, vs) in zip((-0.04, 0.04), curves):
            if sum(v is not None for v in vs) < 2:  # EFT only where the sweep evaluated it
                continue
            y = np.array([v.mean if v else np.nan for v in vs])
            lo = np.array([(v.mean - v.ci[0]) if v and v.ci else (v.err if v and not math.isnan(v.err) else 0)
                           for v in vs])
            hi = np.array([(v.ci[1] - v.mean) if v and v.ci else (v.err if v and not math.isnan(v.err) else 0)
                           for v in vs])
            ax.errorbar(x + dx, y, yerr=[lo, hi], fmt=style, color=COLORS[name], label=name, capsize=3, markersize=5)
        _target_lines(ax, lk, task, target)
        _finish_panel(fig, ax, k, c, [f"{1 / lam:.2g}" for lam in lams], "1/λ", f"{source} → {target}",
                      lk.metric(task), ncol=4)
    return fig


def _finish_panel(fig, ax, k: int, column: int, ticks: list[str], xlabel: str, title: str, metric: str,
                  ncol: int) -> None:
    """Categorical x ticks, title and axis labels of one sweep panel; the figure's legend from the first."""
    ax.set_xticks(np.arange(len(ticks)))
    ax.set_xticklabels(ticks, fontsize=9)
    ax.set_title(title, fontsize=11, weight="bold")
    ax.set_xlabel(xlabel)
    if column == 0:
        ax.set_ylabel(metric.split(",")[0])
    if k == 0:
        fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=ncol, frameon=False, fontsize=11)


def cost_figure(profile: dict, title: str) -> plt.Figure | None:
    """Training step FT vs PRT, and inference of base/reward/FT/PRT/EFT: time and peak memory,
    bars grouped by batch size, each labelled with its ratio to FT (else to the base alone)."""
    rows = [r for r in profile.get("rows", []) if r.get("time_s") is not None or r.get("peak_mem_mb") is not None]
    if not rows:
        return None
    df = pd.DataFrame(rows)
    if "batch" not in df:
        df["batch"] = None
    df["batch"] = df["batch"].fillna("–")
    phases = [p for p in ("train", "decode", "inference") if p in set(df["phase"])]
    phases += sorted(set(df["phase"]) - set(phases))
    unit = {"train": "s / step", "decode": "s / token", "inference": "s / batch"}
    order = {"base": 0, "reward": 1, "ft": 2, "prt": 3, "prt_cached": 3.5, "eft": 4}
    colour = {"base": COLORS["base alone"], "reward": COLORS["reward only"], "ft": COLORS["FT (target)"],
              "prt": COLORS["PRT"], "prt_cached": COLORS["PRT"], "eft": COLORS["EFT"]}
    name = {"base": "base alone", "reward": "reward alone", "ft": "FT", "prt": "PRT", "eft": "EFT",
            "forward": "base pass", "prt_cached": "PRT (pass cached)"}
    what = {**(profile.get("models") or {}), **(profile.get("config") or {}), **(profile.get("settings") or {})}
    what_txt = ", ".join(f"{k}={v}" for k, v in what.items() if v is not None)
    fig = page(title, f"device: {profile.get('device', '?')}; medians as measured by `prt-bench profile`; "
                      "labels: value, and its ratio to FT (else to the base alone) at the same batch size"
                      + (f". Profiled: {what_txt}" if what_txt else ""))
    legend: dict[str, Any] = {}
    for i, phase in enumerate(phases):
        sel = df[df["phase"] == phase]
        methods = sorted(set(sel["method"]), key=lambda m: (order.get(m, 9), str(m)))
        batches = sorted(set(sel["batch"]), key=lambda b: (isinstance(b, str), b))
        ref_method = "ft" if "ft" in methods else "base" if "base" in methods else None
        width = 0.8 / len(methods)
        for j, (col, ylabel) in enumerate((("time_s", unit.get(phase, "s")), ("peak_mem_mb", "peak memory (MB)"))):
            ax = fig.add_axes([0.07 + j * 0.48, 0.86 - (i + 1) * (0.74 / len(phases)) + 0.05,
                               0.4, 0.74 / len(phases) - 0.12])
            value = {(r["method"], r["batch"]): pd.to_numeric(r[col], errors="coerce") for _, r in sel.iterrows()}
            top = 0.0
            for k, m in enumerate(methods):
                xs = np.arange(len(batches)) - 0.4 + width * (k + 0.5)
                vals = np.array([value.get((m, b), np.nan) for b in batches], dtype=float)
                bars = ax.bar(xs, np.nan_to_num(vals), width * 0.92, color=colour.get(m, "#777777"),
                              label=name.get(m, str(m)))
                legend.setdefault(name.get(m, str(m)), bars)
                for x, v, b in zip(xs, vals, batches):
                    if np.isnan(v):
                        continue
                    top = max(top, v)
                    ref = value.get((ref_method, b), np.nan) if ref_method else np.nan
                    lab = f"{v:.3g}"
                    if m != ref_method and ref and not np.isnan(ref) and ref > 0:
                        lab += f"\n{v / ref:.2f}×"
                    ax.text(x, v, lab, ha="center", va="bottom", fontsize=7.5 if len(methods) > 3 else 8.5)
            ax.set_ylim(0, top * 1.3 if top > 0 else 1)
            ax.set_xticks(np.arange(len(batches)))
            ax.set_xticklabels([f"batch {b}" for b in batches], fontsize=9)
            ax.set_ylabel(ylabel)
            ref_txt = f" (× = ratio to {name.get(ref_method, ref_method)})" if ref_method else ""
            ax.set_title(f"{phase}: {'time' if j == 0 else 'memory'}{ref_txt}", fontsize=11, weight="bold")
    fig.legend(list(legend.values()), list(legend.keys()), loc="lower center", ncol=len(legend), frameon=False,
               fontsize=10)
    return fig
