"""Reward arithmetic in the report: a suite's merge sets (``merges:``) as a table, a figure of
task A against task B per method and target, and the claim

    "summed rewards keep at least RETAIN of each single reward's gain over the base on both tasks"

decided per target and task on the paired 95 % CI of
``score(sum) − [RETAIN · score(single) + (1 − RETAIN) · score(base)]`` (above 0: holds), for the
plain sum r_1 + r_2 (every weight 1, fixed before any result); other weights are shown, not
selected.  Cells are read from the records (``config.merge``), items from their samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from prt_bench.report.claims import Claim
from prt_bench.report.results import Items, Results, fmt
from prt_bench.report.stats import paired

RETAIN = 0.8
METHOD_LABELS = {"merge_prt": "PRT, rewards summed", "merge_eft": "EFT, implicit rewards summed",
                 "merge_ta": "task arithmetic (weights)", "merge_ft": "multi-task FT (upper bound)"}


@dataclass
class MergeSet:
    name: str
    tasks: list[str]
    targets: list[str]
    source: str
    cells: dict[tuple, list[tuple[str, int]]]   # (method, weights or None, target, task) -> [(cell id, seed)]


def merge_sets(res: Results) -> list[MergeSet]:
    sets: dict[str, MergeSet] = {}
    zeroshot: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for c in res.cells:
        if c.get("kind") != "eval" or c.get("status") != "done":
            continue
        config = c.get("config") or {}
        if c.get("method") == "zeroshot":
            zeroshot.setdefault((c["target"], c["task"]), []).append((c["cell_id"], c.get("seed", 0)))
        merge = config.get("merge")
        if not merge:
            continue
        s = sets.setdefault(merge["set"], MergeSet(merge["set"], list(merge["tasks"]), [], "", {}))
        if c["target"] not in s.targets:
            s.targets.append(c["target"])
        if c.get("source"):
            s.source = c["source"]
        weights = tuple(merge["weights"]) if "weights" in merge else None
        s.cells.setdefault((c["method"], weights, c["target"], c["task"]), []).append((c["cell_id"], c.get("seed", 0)))
    for s in sets.values():
        for target in s.targets:
            for task in s.tasks:
                if (target, task) in zeroshot:
                    s.cells[("zeroshot", None, target, task)] = zeroshot[(target, task)]
    return list(sets.values())


def _single(s: MergeSet, i: int) -> tuple[float, ...]:
    return tuple(1.0 if j == i else 0.0 for j in range(len(s.tasks)))


def _rows(s: MergeSet) -> list[tuple[str, str, tuple | None]]:
    """(label, method, weights) in the order of the table."""
    rows = [("base alone", "zeroshot", None)]
    rows += [(f"PRT, reward {t} alone", "merge_prt", _single(s, i)) for i, t in enumerate(s.tasks)]
    weights = sorted({k[1] for k in s.cells if k[0] != "zeroshot" and k[1] is not None
                      and k[1] not in [_single(s, i) for i in range(len(s.tasks))]}, reverse=True)
    for method in ("merge_prt", "merge_eft", "merge_ta"):
        rows += [(f"{METHOD_LABELS[method]}, w={','.join(f'{x:g}' for x in w)}", method, w) for w in weights
                 if any(k[:2] == (method, w) for k in s.cells)]
    if any(k[0] == "merge_ft" for k in s.cells):
        rows.append((METHOD_LABELS["merge_ft"], "merge_ft", None))
    return rows


def _value(items: Items, cells) -> tuple[float, np.ndarray] | None:
    m = items.matrix(cells)
    return None if m is None else (float(m[1].mean()), m[1])


def merge_table(s: MergeSet, items: Items) -> pd.DataFrame:
    out = []
    for label, method, w in _rows(s):
        row: dict[str, Any] = {"method": label}
        for target in s.targets:
            for task in s.tasks:
                v = _value(items, s.cells.get((method, w, target, task)))
                row[f"{target}: {task}"] = "–" if v is None else fmt(v[0])
        out.append(row)
    return pd.DataFrame(out)


def merge_claim(s: MergeSet, items: Items) -> Claim:
    claim = Claim(f"Summed rewards keep ≥ {RETAIN:.0%} of each single reward's gain ({s.name})",
                  f"per target and task, PRT with r = Σ r_i (every weight 1): the 95 % CI of sum − "
                  f"[{RETAIN:g}·single + {1 - RETAIN:g}·base alone] lies above 0")
    ones = tuple(1.0 for _ in s.tasks)
    for target in s.targets:
        for i, task in enumerate(s.tasks):
            got = [items.matrix(s.cells.get(k)) for k in (("merge_prt", ones, target, task),
                                                          ("merge_prt", _single(s, i), target, task),
                                                          ("zeroshot", None, target, task))]
            if any(g is None for g in got) or len({tuple(g[0]) for g in got}) != 1:
                continue
            summed, single, base = (g[1].mean(0, keepdims=True) for g in got)
            d = paired(summed, RETAIN * single + (1 - RETAIN) * base)
            gain = float(single.mean() - base.mean())
            kept = (float(summed.mean() - base.mean()) / gain) if abs(gain) > 1e-12 else float("nan")
            claim.checks.append((d.lo > 0, f"{task} on {target}: base {base.mean():.3f}, reward {task} alone "
                                           f"{single.mean():.3f}, summed {summed.mean():.3f} (keeps {kept:.0%} of the "
                                           f"gain); {d}"))
    return claim


def merge_figure(s: MergeSet, items: Items, title: str):
    """Task A against task B for each method, one panel per target (task-vector papers' figure)."""
    from prt_bench.report import figures as F

    if len(s.tasks) < 2:
        return None
    a, b = s.tasks[:2]
    fig = F.page(title, f"{a} (x) against {b} (y), each method on each target; the plain sum has every weight 1")
    n = len(s.targets)
    markers = {"zeroshot": "o", "merge_prt": "s", "merge_eft": "^", "merge_ta": "D", "merge_ft": "*"}
    for k, target in enumerate(s.targets):
        ax = fig.add_axes([0.06 + k * 0.92 / n, 0.24, 0.92 / n - 0.05, 0.56])
        for label, method, w in _rows(s):
            va, vb = (_value(items, s.cells.get((method, w, target, t))) for t in (a, b))
            if va is None or vb is None:
                continue
            ax.scatter([va[0]], [vb[0]], marker=markers[method], s=60, label=label)
        ax.set_title(target, fontsize=10)
        ax.set_xlabel(a)
        if k == 0:
            ax.set_ylabel(b)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    return fig
