"""Where mini_gsm's data comes from: the JSONL that `prt-bench mini build lm` writes.

Resolution order: `--metadata '{"data_dir": DIR}'`, then $PRT_BENCH_MINI_LM_DATA, then the
default build's data folder (.cache/mini/lm/<config-hash>/data), which is generated on the
spot when missing (the generator is deterministic and needs no model).
"""

from prt_bench.mini.lm.tasks import load_probe_dataset, load_split_dataset


def load_mini_gsm(**kwargs):
    return load_split_dataset("mini_gsm", **kwargs)


def load_mini_gsm_probe(**kwargs):
    return load_probe_dataset("mini_gsm", **kwargs)
