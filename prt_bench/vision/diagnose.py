"""Whose knowledge PRT's predictions carry, read from a vision run's per-image records.

``prt-bench diagnose vision --results results/reference/mini`` needs no checkpoint: for every
PRT cell carried to another base (main α, trained λ) it pairs the per-image predictions of PRT,
of the reward alone (softmax r, the same reward) and of the target alone, and reports

- how often PRT predicts what the reward alone predicts, and what the target alone predicts;
- on the images where the reward alone and the target alone disagree (the only images where
  the target's knowledge can change anything): how many there are, whom PRT follows, and how
  often each of the two is right there;
- per class (``per_class``): each main cell's accuracy (or mean log-probability of the true
  label) on the images of each label, averaged over seeds -- where a skill (a repaired label)
  and knowledge (the other labels) part.

If PRT follows the reward on nearly every disagreement, the reward is its own classifier and
the target's knowledge barely enters.  ``prt-bench diagnose vision`` prints the world card
(``prt_bench.report.card``: P3, that the target's knowledge matters) beside it, and with
``--suite`` loads that suite's bases and measures their zero-shot heads (``heads``): how far
apart each holds the class names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _predictions(results: Path, record: dict[str, Any]) -> dict[int, tuple[int, int, float]]:
    """image index -> (label, prediction, log-probability of the label)."""
    from prt_bench.suite import samples

    _, rows = samples.read(results, record)
    return {int(r["i"]): (int(r["label"]), int(r["pred"]), float(r["logp_true"])) for r in rows}


def agreement(results: str | Path) -> list[dict[str, Any]]:
    from prt_bench.suite.store import all_cells

    results = Path(results)
    evals = [r for r in all_cells(results) if r.get("kind") == "eval" and r.get("modality") == "vision"
             and r.get("samples")]

    def find(method: str, target: str, **kw) -> dict | None:
        hits = [r for r in evals if r["method"] == method and r["target"] == target
                and all(r.get(k) == v for k, v in kw.items())]
        return hits[0] if hits else None

    out = []
    for prt in evals:
        if prt["method"] != "prt" or prt["source"] == prt["target"]:
            continue
        reward = find("reward_only", prt["source"], task=prt["task"], alpha=prt["alpha"], seed=prt["seed"])
        alone = find("zeroshot", prt["target"], task=prt["task"], seed=prt["seed"])
        if reward is None or alone is None or prt["config"].get("lam") != reward["config"].get("lam"):
            continue
        p, r, t = (_predictions(results, x) for x in (prt, reward, alone))
        images = sorted(p)
        n = len(images)
        split = [i for i in images if r[i][1] != t[i][1]]

        def share(items, test) -> float | None:
            return sum(1 for i in items if test(i)) / len(items) if items else None

        out.append({
            "task": prt["task"], "source": prt["source"], "target": prt["target"], "scenario": prt.get("scenario"),
            "alpha": prt["alpha"], "seed": prt["seed"], "images": n,
            "PRT = reward alone": share(images, lambda i: p[i][1] == r[i][1]),
            "PRT = target alone": share(images, lambda i: p[i][1] == t[i][1]),
            "reward and target disagree": len(split) / n if n else None,
            "there PRT follows the reward": share(split, lambda i: p[i][1] == r[i][1]),
            "there PRT follows the target": share(split, lambda i: p[i][1] == t[i][1]),
            "there the reward is right": share(split, lambda i: r[i][1] == r[i][0]),
            "there the target is right": share(split, lambda i: t[i][1] == t[i][0]),
            "there PRT is right": share(split, lambda i: p[i][1] == p[i][0]),
        })
    return out



MEASURES = ("acc1", "logp_true")


def per_class(res, measure: str = "acc1") -> list[dict[str, Any]]:
    """Accuracy (``measure="acc1"``) or mean log-probability of the true label (``"logp_true"``:
    how confidently a cell is right or wrong) per label of every main vision cell of a loaded
    results folder (``prt_bench.report.results.load_results``) -- PRT and the reward alone at the
    main α, no cell of the λ sweep -- averaged over seeds: one row per (method, source, target),
    one column per label index."""
    from collections import defaultdict

    from prt_bench.report.results import Items
    from prt_bench.report.tables import Lookup

    if measure not in MEASURES:
        raise ValueError(f"per_class measure {measure!r}: one of {', '.join(MEASURES)}")
    lk = Lookup(res.agg, Items(res))
    main = {r["cell_id"] for r in res.rows.to_dict("records")
            if r["modality"] == "vision" and r.get("lam_swept") is not True
            and (r["method"] not in ("prt", "reward_only") or r["alpha"] == lk.main_alpha(r["task"], r["source"]))}
    acc: dict[tuple, list[dict[int, float]]] = defaultdict(list)
    for rec in res.cells:
        if rec.get("kind") != "eval" or rec.get("cell_id") not in main or not rec.get("samples"):
            continue
        hits: dict[int, list[float]] = defaultdict(list)
        for label, pred, logp in _predictions(res.root, rec).values():
            hits[label].append(float(pred == label) if measure == "acc1" else logp)
        acc[(rec["task"], rec["method"], rec.get("source") or "–", rec["target"])].append(
            {c: sum(v) / len(v) for c, v in hits.items()})
    out = []
    for (task, method, source, target), seeds in sorted(acc.items()):
        labels = sorted({c for s in seeds for c in s})
        out.append({"task": task, "method": method, "source": source, "target": target, "seeds": len(seeds),
                    **{f"class {c}": sum(s[c] for s in seeds if c in s) / sum(c in s for s in seeds)
                       for c in labels}})
    return out


def heads(suite_ref: str, cache: Path | None = None) -> list[dict[str, Any]]:
    """``head_spread`` of every base of a suite's vision section on each of its tasks, loading the
    bases as the suite does (its mini world found in the cache, or built)."""
    from prt_bench.suite.resolve import build_world, resolve_base
    from prt_bench.suite.schema import load_suite
    from prt_bench.vision.bases import load_base
    from prt_bench.vision.datasets.registry import get_spec
    from prt_bench.vision.heads import base_head_spread

    suite = load_suite(suite_ref)
    if "vision" not in suite.sections:
        raise ValueError(f"suite {suite.name} has no vision section")
    section = suite.sections["vision"]
    world = build_world(suite, "vision", cache, False) if any("mini" in s for s in section.bases.values()) else None
    rows = []
    for name, spec in section.bases.items():
        base = load_base(resolve_base("vision", spec, cache, world))
        for task, options in section.tasks.items():
            rows.append({"task": task, "base": name, **base_head_spread(base, get_spec(options.get("dataset", task)))})
    return rows
