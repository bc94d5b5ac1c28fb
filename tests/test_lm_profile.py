"""`profile_lm`: one record with decode and train rows for every method, in the agreed schema."""

from __future__ import annotations

import torch

from prt_bench.io import PROFILE_SCHEMA as SCHEMA
from prt_bench.lm.profile import profile_lm


def test_profile_measures_every_method_side_by_side_with_ratios(tiny_llama):
    threads = torch.get_num_threads()
    try:
        record = profile_lm(str(tiny_llama), batch_sizes=(1, 2), prompt_len=4, new_tokens=8, train_batch=2,
                            train_seq_len=8, repeats=3, threads=1, isolate=False, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert record["schema"] == SCHEMA and record["modality"] == "lm" and record["device"] == "cpu"
    got = {(r["phase"], r["method"], r["batch"]) for r in record["rows"]}
    assert got == {("decode", m, b) for m in ("base", "reward", "prt", "eft") for b in (1, 2)} | {
        ("train", "ft", 2), ("train", "prt", 2), ("train", "forward", 2)}
    assert all(r["time_s"] > 0 and r["cpu_s"] > 0 and r["peak_mem_mb"] >= 0 for r in record["rows"])
    assert record["ratios_cpu_time"]["prt/ft train time"] > 0
    assert {"prt/(base+reward) decode time b1", "eft/prt decode time b2", "prt/ft train time"} <= record["ratios"].keys()
    assert record["limits"].keys() <= record["ratios"].keys() and record["limits"]["prt/(base+reward) decode time b1"] == 1


def test_limits_are_the_single_models_arithmetic():
    from prt_bench.lm.profile import time_ratios

    # decode at batch 1: target alone 3 ms/token, reward alone 1, PRT 4.4, EFT 5.5; train: FT 2 s, base forward 0.5 s
    t = {("decode", "base", 1): 3.0, ("decode", "reward", 1): 1.0, ("decode", "prt", 1): 4.4,
         ("decode", "eft", 1): 5.5, ("train", "ft", 8): 2.0, ("train", "prt", 8): 2.7, ("train", "forward", 8): 0.5}
    ratios, limits = time_ratios(t, [1], 8)
    assert limits == {"prt/ft decode time b1": 4 / 3, "prt/(base+reward) decode time b1": 1.0,
                      "eft/prt decode time b1": 5 / 4, "eft/(base+2 reward) decode time b1": 1.0,
                      "prt/ft train time": 1.25}
    assert ratios["prt/(base+reward) decode time b1"] == 4.4 / 4 and ratios["eft/(base+2 reward) decode time b1"] == 1.1
    assert ratios["prt/ft train time"] == 2.7 / 2 and ratios["eft/prt decode time b1"] == 5.5 / 4.4
