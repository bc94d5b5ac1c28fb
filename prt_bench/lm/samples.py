"""lm-eval's per-sample records, kept as a cell's evidence, and every metric recomputed from them.

A row is one lm-eval sample (one document under one filter) without the document itself:
``doc_id``, ``filter``, ``doc_hash``, ``prompt_hash``, ``target``, the raw ``resps`` and the
``filtered_resps``, the names of its ``metrics`` and each metric's value.  The header says how
each metric aggregates (an lm-eval registry name such as ``mean``, or ``flatten_mean`` for
IFEval's instruction-level lists) and which derived metrics the suite adds.
"""

from __future__ import annotations

from typing import Any

ROW_KEYS = ("doc_id", "filter", "doc_hash", "prompt_hash", "target", "resps", "filtered_resps", "metrics")
FLATTEN_MEAN = "flatten_mean"  # IFEval's agg_inst_level_acc: every list flattened, then the mean
# "answered,<filter>": whether the filter found an answer at all (lm-eval's regex filters give
# "[invalid]" when nothing matches).  On GSM8K's strict-match it is the share of answers written
# in the "#### N" form -- the format fine-tuning teaches -- apart from whether N is right.
ANSWERED = "answered"
INVALID = "[invalid]"


def from_lm_eval(out: dict[str, Any], task_name: str, derived: dict[str, list[str]] | None) -> dict[str, Any]:
    """``{"header", "rows"}`` from ``simple_evaluate(..., log_samples=True)``'s output."""
    from prt_bench.suite.samples import jsonable

    rows = []
    for s in out["samples"][task_name]:
        row = {k: s[k] for k in ROW_KEYS}
        row.update({m: s[m] for m in s["metrics"]})
        rows.append(jsonable(row))
    aggregation = {}
    for spec in out["configs"][task_name].get("metric_list") or []:
        agg = spec.get("aggregation")
        values = [r[spec["metric"]] for r in rows if spec["metric"] in r]
        if isinstance(agg, str) and _registered(agg):
            aggregation[spec["metric"]] = agg
        elif values and all(isinstance(v, list) for v in values):
            aggregation[spec["metric"]] = FLATTEN_MEAN  # (lm-eval gives a function's source here)
        else:
            raise ValueError(f"{task_name}: metric {spec['metric']} aggregates by a function prt-bench cannot "
                             "recompute from its samples")
    header = {"modality": "lm", "task": task_name, "aggregation": aggregation, "derived": derived or {}}
    return {"header": header, "rows": rows}


def _registered(name: str) -> bool:
    from lm_eval.api.registry import AGGREGATION_REGISTRY

    return name in AGGREGATION_REGISTRY


def _values(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[Any]]:
    by: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        for metric in row["metrics"]:
            by.setdefault((metric, row["filter"]), []).append(row[metric])
    return by


def sample_metrics(rows: list[dict[str, Any]]) -> list[str]:
    """Metrics the rows give beyond lm-eval's: ``answered,<filter>`` for every extracting filter
    (all but lm-eval's "none", which passes the response through)."""
    return sorted({f"{ANSWERED},{row['filter']}" for row in rows if row["filter"] != "none"})


def rescore(header: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The cell's metrics from its rows, with lm-eval's own aggregation and closed-form errors."""
    from lm_eval.api.metrics import mean_stderr
    from lm_eval.api.registry import get_aggregation

    metrics: dict[str, Any] = {}
    for (metric, filt), values in _values(rows).items():
        agg = header["aggregation"].get(metric)
        if agg == FLATTEN_MEAN:
            flat = [x for v in values for x in v]
            metrics[f"{metric},{filt}"] = sum(flat) / len(flat)
        elif agg is not None:
            metrics[f"{metric},{filt}"] = get_aggregation(agg)(values)
            if agg == "mean" and len(values) > 1:
                metrics[f"{metric}_stderr,{filt}"] = mean_stderr(values)
    for name, parts in (header.get("derived") or {}).items():
        if all(p in metrics for p in parts):
            metrics[name] = sum(metrics[p] for p in parts) / len(parts)
    metrics["n_samples"] = metrics["sample_len"] = len({row["doc_id"] for row in rows})
    return metrics


def item_scores(header: dict[str, Any], rows: list[dict[str, Any]], metric: str) -> dict[str, float]:
    """doc id -> the document's own value of ``metric`` ("<name>,<filter>" or a derived one),
    whose mean over documents is the metric exactly.

    A list-valued metric aggregated by flattening (IFEval's instruction-level accuracy: every
    instruction of every prompt counts once) gives a document ``its correct instructions / the
    mean number of instructions per document``, so prompts with more instructions weigh more,
    as in the flattened mean; a list aggregated otherwise gives the document's mean."""
    parts = (header.get("derived") or {}).get(metric)
    if parts:
        each = [item_scores(header, rows, p) for p in parts]
        return {doc: sum(e[doc] for e in each) / len(each) for doc in each[0]}
    name, _, filt = metric.partition(",")
    if name == ANSWERED:
        mine = [row for row in rows if row["filter"] == filt]
        if not mine:
            raise KeyError(f"no samples under the filter {filt!r}")
        return {str(row["doc_id"]): float(row["filtered_resps"][0] != INVALID) for row in mine}
    mine = [row for row in rows if row["filter"] == filt and name in row]
    if not mine:
        raise KeyError(f"no samples hold {metric!r}")
    flatten = (header.get("aggregation") or {}).get(name) == FLATTEN_MEAN
    if flatten:
        per_doc = sum(len(row[name]) for row in mine) / len(mine)
    out = {}
    for row in mine:
        v = row[name]
        if isinstance(v, list):
            out[str(row["doc_id"])] = float(sum(v) / per_doc) if flatten else float(sum(v) / len(v))
        else:
            out[str(row["doc_id"])] = float(v)
    return out
