"""The report's tables, computed once and drawn twice (PDF pages and Markdown)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from prt_bench.report.results import METHOD_LABELS, fmt, fmt_alpha


@dataclass(frozen=True)
class Value:
    mean: float
    err: float  # the error bar (std over seeds, else stderr); NaN when unknown
    stderr: float
    n_seeds: int
    cells: tuple = ()                       # (cell id, seed) of the cells behind it
    ci: tuple[float, float] | None = None   # 95 % bootstrap interval from the per-sample records

    def __str__(self) -> str:
        if self.ci is not None:
            return f"{self.mean:.3f} [{self.ci[0]:.3f}, {self.ci[1]:.3f}]"
        return fmt(self.mean, self.err)


class Lookup:
    """Answers "what did method M score on task T, from source S on target B at α?".  With the
    results' ``Items``, values carry the 95 % interval of their per-sample records."""

    def __init__(self, agg: pd.DataFrame, items=None, probe_of: dict[str, str] | None = None):
        self.agg = agg
        self.items = items
        # probe task -> probed task (``results.probes_of``): the items' unless given
        self.probe_of: dict[str, str] = dict(probe_of if probe_of is not None else getattr(items, "probe_of", {}))
        self._ci: dict[tuple, tuple[float, float] | None] = {}
        # An index by (task, method): pandas filtering per lookup was the report's bottleneck.
        self._by: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in agg.to_dict("records"):
            self._by.setdefault((r["task"], r["method"]), []).append(r)

    def tasks(self) -> list[tuple[str, str]]:
        """(modality, task) pairs, language first; not the knowledge probes (``probes``)."""
        pairs = self.agg[["modality", "task"]].drop_duplicates().itertuples(index=False)
        return sorted(((m or "", t) for m, t in pairs if t not in self.probe_of),
                      key=lambda mt: (mt[0] != "lm", mt[0], mt[1]))

    def probes(self, task: str) -> list[str]:
        """The tasks that probe what the bases alone know of ``task`` (its world card's P1)."""
        return sorted(p for p, probed in self.probe_of.items() if probed == task)

    def _select(self, task: str, method: str, **eq: Any) -> list[dict[str, Any]]:
        rows = self._by.get((task, method), [])
        if eq.get("lam") is None:  # PRT at the λ its reward was trained with, unless a λ is asked for
            rows = [r for r in rows if not r.get("lam_swept", False)]
        for col, val in eq.items():
            if val is None:
                continue
            if col in ("alpha", "lam"):
                rows = [r for r in rows if abs(r[col] - val) < 1e-12]
            else:
                rows = [r for r in rows if r[col] == val]
        return rows

    def _value(self, sel: list[dict[str, Any]]) -> Value | None:
        if not sel:
            return None
        # Several rows (e.g. reward-only recorded once per target): their plain mean.
        mean = lambda key: float(sum(float(r[key]) for r in sel) / len(sel))  # noqa: E731
        cells = tuple(c for r in sel for c in (r.get("cells") or ()))
        return Value(mean("mean"), mean("err"), mean("stderr"), int(min(r["n_seeds"] for r in sel)), cells,
                     self._interval(cells))

    def _interval(self, cells: tuple) -> tuple[float, float] | None:
        if self.items is None or not cells:
            return None
        if cells not in self._ci:
            from prt_bench.report.stats import bootstrap

            m = self.items.matrix(cells)
            self._ci[cells] = None if m is None else bootstrap(m[1])
        return self._ci[cells]

    def per_seed(self, v: Value) -> dict[Any, float]:
        """Seed -> the value's mean in that seed, from its per-sample records (empty without them)."""
        if self.items is None:
            return {}
        out: dict[Any, list[float]] = {}
        for cell_id, seed in v.cells:
            m = self.items.matrix([(cell_id, seed)])
            if m is None:
                return {}
            out.setdefault(seed, []).append(float(m[1].mean()))
        return {seed: sum(x) / len(x) for seed, x in out.items()}

    def compare(self, a: Value, b: Value):
        """``stats.Paired`` of a - b: paired on the per-sample records when both have them on the
        same items, else a normal approximation from the error bars (said so in its test name)."""
        from prt_bench.report import stats

        both = self.items.pair(a.cells, b.cells) if self.items is not None else None
        if both is not None:
            return stats.paired(*both)
        return stats.unpaired(a.mean, a.err, b.mean, b.err)

    def get(self, task: str, method: str, *, source: str | None = None, target: str | None = None,
            alpha: float | None = None) -> Value | None:
        return self._value(self._select(task, method, source=source, target=target, alpha=alpha))

    def base_alone(self, task: str, base: str) -> Value | None:
        return self.get(task, "zeroshot", target=base)

    def head(self, task: str, base: str) -> dict[str, Any] | None:
        """How far apart the base's zero-shot head holds the task's class names (``heads.head_spread``),
        as its zero-shot cell recorded it; None where no cell records it (language, older results)."""
        alone = self.base_alone(task, base)
        for cell_id, _ in (alone.cells if alone is not None and self.items is not None else ()):
            head = (self.items.header(cell_id) or {}).get("head")
            if head:
                return head
        return None

    def ft_of(self, task: str, base: str, prefer: str = "ft_target") -> Value | None:
        """FT of `base` evaluated on `base`: the `prefer` kind of FT cell (ft_target or
        ft_source), else the other kind."""
        as_target = lambda: self.get(task, "ft_target", target=base)  # noqa: E731

        def as_source():
            sel = self._select(task, "ft_source", source=base)
            return self._value([r for r in sel if r["target"] in (base, "")])

        first, second = (as_target, as_source) if prefer == "ft_target" else (as_source, as_target)
        v = first()
        return v if v is not None else second()

    def alphas(self, task: str, method: str = "prt", source: str | None = None) -> list[float]:
        return sorted(set(float(r["alpha"]) for r in self._select(task, method, source=source)))

    def swept_targets(self, task: str, source: str) -> list[str]:
        """Targets PRT from `source` was run on at two or more α (the entropy ablation's panels)."""
        return [t for s, t, _ in self.pairs(task)
                if s == source and len({r["alpha"] for r in self._select(task, "prt", source=s, target=t)}) >= 2]

    def main_alpha(self, task: str, source: str) -> float:
        """The α the main tables use: the one PRT was run at on the most targets (a sweep
        usually covers fewer), the smallest among equals."""
        counts: dict[float, int] = {}
        for r in self._select(task, "prt", source=source):
            counts[float(r["alpha"])] = counts.get(float(r["alpha"]), 0) + 1
        if not counts:
            return 0.0
        return min(counts, key=lambda a: (-counts[a], a))

    def prt(self, task: str, source: str, target: str, alpha: float | None = None,
            lam: float | None = None) -> Value | None:
        a = self.main_alpha(task, source) if alpha is None else alpha
        return self._value(self._select(task, "prt", source=source, target=target, alpha=a, lam=lam))

    def lam_sweeps(self, task: str) -> list[tuple[str, str, list[float]]]:
        """(source, target, the λ values) of every transfer PRT (at the main α) or EFT was evaluated
        at two or more λ."""
        out = []
        for s, t, _ in self.pairs(task):
            a = self.main_alpha(task, s)
            prt = {r["lam"] for r in self._by.get((task, "prt"), [])
                   if r["source"] == s and r["target"] == t and abs(r["alpha"] - a) < 1e-12}
            eft = {r["lam"] for r in self._by.get((task, "eft"), []) if r["source"] == s and r["target"] == t}
            if len(prt) >= 2 or len(eft) >= 2:
                out.append((s, t, sorted(prt | eft)))
        return out

    def eft(self, task: str, source: str, target: str, lam: float | None = None) -> Value | None:
        sel = self._select(task, "eft", source=source, target=target, lam=lam)
        if not sel:
            return None
        lo = min(r["alpha"] for r in sel)
        return self._value([r for r in sel if r["alpha"] == lo])

    def reward_only(self, task: str, source: str, alpha: float) -> Value | None:
        return self.get(task, "reward_only", source=source, alpha=alpha)

    def pairs(self, task: str) -> list[tuple[str, str, str]]:
        """(source, target, scenario) of every PRT/EFT transfer, same-base first."""
        found: dict[tuple[str, str], str] = {}
        for r in self._by.get((task, "prt"), []) + self._by.get((task, "eft"), []):
            if not r["source"]:
                continue
            key = (r["source"], r["target"])
            scen = r["scenario"] or ("same_base" if r["source"] == r["target"] else "")
            if not found.get(key):
                found[key] = scen
        order = {"same_base": 0, "upscaling": 1, "update": 2, "other_arch": 3}
        return sorted(((s, t, sc) for (s, t), sc in found.items()), key=lambda x: (order.get(x[2], 9), x[2], x[0], x[1]))

    def sources(self, task: str) -> list[str]:
        return sorted({s for s, _, _ in self.pairs(task)})

    def targets(self, task: str) -> list[str]:
        """Every base that appears as a target on this task, in first-seen transfer order."""
        seen: list[str] = []
        for _, t, _ in self.pairs(task):
            if t not in seen:
                seen.append(t)
        for t in sorted({r["target"] for (tk, _), rows in self._by.items() if tk == task for r in rows} - {""}):
            if t not in seen:
                seen.append(t)
        return seen

    def metric(self, task: str) -> str:
        return next((r["metric"] for (tk, _), rows in self._by.items() if tk == task for r in rows if r["metric"]), "")


# Main per-task table: one row per transfer, one column per method.
MAIN_COLUMNS = ("scenario", "source → target", "source alone", "target alone", "FT (source)", "FT (target)", "EFT", "PRT")


def main_table(lk: Lookup, task: str) -> pd.DataFrame:
    rows = []
    for source, target, scenario in lk.pairs(task):
        rows.append(
            {
                "scenario": scenario.replace("_", " ") or "–",
                "source → target": f"{source} → {target}",
                "source alone": str(lk.base_alone(task, source) or "–"),
                "target alone": str(lk.base_alone(task, target) or "–"),
                "FT (source)": str(lk.ft_of(task, source, prefer="ft_source") or "–"),
                "FT (target)": str(lk.ft_of(task, target) or "–"),
                "EFT": str(lk.eft(task, source, target) or "–"),
                "PRT": str(lk.prt(task, source, target) or "–"),
            }
        )
    if not rows:
        # A task with no transfer (e.g. only bases and FT): one row per base.
        for base in lk.targets(task):
            rows.append(
                {
                    "scenario": "–", "source → target": f"– → {base}", "source alone": "–",
                    "target alone": str(lk.base_alone(task, base) or "–"), "FT (source)": "–",
                    "FT (target)": str(lk.ft_of(task, base) or "–"), "EFT": "–", "PRT": "–",
                }
            )
    return pd.DataFrame(rows, columns=list(MAIN_COLUMNS))


def _paired_text(d) -> str:
    p = "–" if math.isnan(d.p) else f"{d.p:.2g}"
    return f"{d.diff:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}] p {p}"


def same_base_table(lk: Lookup, task: str) -> pd.DataFrame:
    """On each base with PRT(s→s): the base alone, FT and PRT, for every metric their records
    share (not only the primary one), with the paired differences PRT − FT, FT − base alone and
    PRT − base alone (95 % CI on the per-sample records, and the exact paired test's p)."""
    from prt_bench.report import stats

    rows = []
    for source, target, _ in lk.pairs(task):
        if source != target:
            continue
        cells = {"base alone": lk.base_alone(task, source), "FT": lk.ft_of(task, source, prefer="ft_source"),
                 "PRT": lk.prt(task, source, source)}
        if any(v is None for v in cells.values()) or lk.items is None:
            continue
        metrics = lk.items.metrics(tuple(c for v in cells.values() for c in v.cells))
        for metric in metrics:
            m = {k: lk.items.matrix(v.cells, metric) for k, v in cells.items()}
            if any(x is None for x in m.values()) or len({tuple(x[0]) for x in m.values()}) != 1:
                continue
            v = {k: x[1] for k, x in m.items()}
            row = {"base": source, "metric": metric, "n": v["PRT"].shape[1]}
            row.update({k: f"{x.mean():.3f}" for k, x in v.items()})
            for a, b in (("PRT", "FT"), ("FT", "base alone"), ("PRT", "base alone")):
                row[f"{a} − {b}"] = _paired_text(stats.paired(v[a], v[b]))
            rows.append(row)
    return pd.DataFrame(rows)


def cell_cost_table(cells: list[dict[str, Any]]) -> pd.DataFrame:
    """What each cell cost as it ran: wall seconds, CPU seconds of its process (every thread),
    peak memory; training cells first."""
    rows = []
    for c in sorted(cells, key=lambda c: (c.get("kind") != "train", *(str(c.get(k) or "") for k in
                                                                         ("method", "target", "task", "cell_id")))):
        t = c.get("timing") or {}
        label = " ".join(str(x) for x in (c.get("kind"), c.get("method"), c.get("task") or "",
                                         c.get("source") or "", "→" if c.get("source") else "", c.get("target") or "")
                         if x)
        rows.append({"cell": c.get("cell_id", ""), "what": label,
                     "wall s": f"{t['wall_s']:.1f}" if t.get("wall_s") is not None else "–",
                     "CPU s": f"{t['cpu_s']:.1f}" if t.get("cpu_s") is not None else "–",
                     "peak MB": f"{t['peak_mem_mb']:.0f}" if t.get("peak_mem_mb") is not None else "–"})
    return pd.DataFrame(rows, columns=["cell", "what", "wall s", "CPU s", "peak MB"])


def ablation_table(lk: Lookup, task: str) -> pd.DataFrame:
    """Entropy ablation (eq. 12): reward-only and PRT accuracy per α, per source → target."""
    rows = []
    for source in lk.sources(task):
        alphas = sorted(set(lk.alphas(task, "prt", source)) | set(lk.alphas(task, "reward_only", source)))
        if len(alphas) < 2 and not lk.alphas(task, "reward_only", source):
            continue
        targets = lk.swept_targets(task, source)
        for a in alphas:
            row = {"source": source, "α": fmt_alpha(a), "reward only": str(lk.reward_only(task, source, a) or "–")}
            for t in targets:
                row[f"PRT → {t}"] = str(lk.prt(task, source, t, alpha=a) or "–")
            rows.append(row)
    return pd.DataFrame(rows)


def lam_table(lk: Lookup, task: str) -> pd.DataFrame:
    """PRT at each inference λ (eq. 10: the reward's strength is 1/λ), one column per transfer;
    EFT at the same strength of its implicit reward where the sweep has it."""
    sweeps = lk.lam_sweeps(task)
    lams = sorted({x for _, _, ls in sweeps for x in ls}, reverse=True)
    with_eft = {(s, t) for s, t, ls in sweeps if sum(lk.eft(task, s, t, lam=x) is not None for x in ls) >= 2}
    rows = []
    for lam in lams:
        row = {"λ": f"{lam:g}", "1/λ": f"{1 / lam:.2g}"}
        for s, t, _ in sweeps:
            row[f"PRT {s} → {t}"] = str(lk.prt(task, s, t, lam=lam) or "–")
            if (s, t) in with_eft:
                row[f"EFT {s} → {t}"] = str(lk.eft(task, s, t, lam=lam) or "–")
        rows.append(row)
    return pd.DataFrame(rows)


def long_table(agg: pd.DataFrame) -> pd.DataFrame:
    """Every aggregated result, one line each (the appendix)."""
    if agg.empty:
        return pd.DataFrame(columns=["task", "method", "source", "target", "α", "λ", "value", "seeds"])
    df = agg.sort_values(["modality", "task", "method", "source", "target", "alpha", "lam"])
    return pd.DataFrame(
        {
            "task": df["task"],
            "method": [METHOD_LABELS.get(m, m) for m in df["method"]],
            "source": [s or "–" for s in df["source"]],
            "target": [t or "–" for t in df["target"]],
            "α": [fmt_alpha(a) for a in df["alpha"]],
            "λ": [f"{x:g}" if m in ("prt", "eft") else "–" for m, x in zip(df["method"], df["lam"])],
            "value": [fmt(m, e) for m, e in zip(df["mean"], df["err"])],
            "seeds": df["n_seeds"].astype(int),
        }
    ).reset_index(drop=True)


COST_METHODS = {"base": "base", "reward": "reward", "forward": "base pass", "prt_cached": "PRT (base pass cached)"}


def cost_table(profile: dict[str, Any]) -> pd.DataFrame:
    unit = {"train": "s / step", "decode": "s / token", "inference": "s / batch"}
    rows = []
    with_cpu = any(r.get("cpu_s") is not None for r in profile.get("rows", []))
    for r in profile.get("rows", []):
        t, c, m = r.get("time_s"), r.get("cpu_s"), r.get("peak_mem_mb")
        u = unit.get(r.get("phase"), "s")
        row = {
            "phase": r.get("phase", "–"),
            "method": COST_METHODS.get(r.get("method"), str(r.get("method", "–")).upper()),
            "batch": str(r.get("batch", "–")),
            "time": "–" if t is None else f"{t:.4g} {u}",
        }
        if with_cpu:  # CPU seconds: less disturbed than wall time on a shared machine
            row["CPU time"] = "–" if c is None else f"{c:.4g} {u}"
        row["peak memory (MB)"] = "–" if m is None else f"{m:.1f}"
        rows.append(row)
    return pd.DataFrame(rows)


def ratio_table(profile: dict[str, Any]) -> pd.DataFrame:
    """Every ratio of a profile, wall time then CPU seconds, beside its physical limit (the
    single models' arithmetic, measured in the same run) and how far above it the measurement is;
    with several targets (``transfers``), a column names the target of each inference ratio
    (training is the source's, listed once)."""
    fmt = lambda v: f"{v:.2f}×" if isinstance(v, (int, float)) and math.isfinite(v) else "–"  # noqa: E731
    transfers = profile.get("transfers") or [profile]
    rows = []
    for i, tr in enumerate(transfers):
        for suffix, ratios, limits in (("", tr.get("ratios") or {}, tr.get("limits") or {}),
                                       (" (CPU seconds)", tr.get("ratios_cpu_time") or {},
                                        tr.get("limits_cpu_time") or {})):
            for k, v in ratios.items():
                if i and "train" in k:
                    continue
                limit = limits.get(k)
                over = (f"{100 * (v / limit - 1):+.0f} %" if isinstance(v, (int, float))
                        and isinstance(limit, (int, float)) and math.isfinite(v) and limit > 0 else "–")
                row = {"target": "–" if "train" in k else str(tr.get("target", "–"))} if len(transfers) > 1 else {}
                rows.append({**row, "ratio": k + ("" if "CPU" in k else suffix), "value": fmt(v),
                             "limit": fmt(limit), "vs limit": over})
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub table without the `tabulate` dependency; `|` in cells escaped."""
    if df.empty:
        return "_no data_\n"
    esc = lambda x: str(x).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    head = "| " + " | ".join(esc(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(esc(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"
