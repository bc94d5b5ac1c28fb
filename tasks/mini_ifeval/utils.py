"""mini_ifeval's data (see tasks/mini_gsm/utils.py for where it is found) and its scoring:
prt_bench.mini.lm.ifeval.check, with IFEval's four metrics and aggregation."""

from prt_bench.mini.lm.ifeval import check
from prt_bench.mini.lm.tasks import load_split_dataset


def load_mini_ifeval(**kwargs):
    return load_split_dataset("mini_ifeval", **kwargs)


def process_results(doc, results):
    return check(doc, results[0])


def agg_inst_level_acc(items):
    flat = [x for sub in items for x in sub]
    return sum(flat) / len(flat)
