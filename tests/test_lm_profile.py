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
        ("train", m, 2) for m in ("ft", "prt", "prt_cached", "forward")}
    assert all(r["time_s"] > 0 and r["cpu_s"] > 0 and r["peak_mem_mb"] >= 0 for r in record["rows"])
    assert record["ratios_cpu_time"]["prt/ft train time"] > 0
    assert {"prt/(base+reward) decode time b1", "eft/prt decode time b2", "prt/ft train time"} <= record["ratios"].keys()
    assert record["limits"].keys() <= record["ratios"].keys() and record["limits"]["prt/(base+reward) decode time b1"] == 1


def test_profile_covers_every_target_of_the_reward(tiny_llama, tiny_llama_b):
    threads = torch.get_num_threads()
    try:
        record = profile_lm(str(tiny_llama), targets=(str(tiny_llama_b),), batch_sizes=(1,), prompt_len=4,
                            new_tokens=4, train_batch=2, train_seq_len=8, repeats=1, threads=1, isolate=False,
                            progress=False)
    finally:
        torch.set_num_threads(threads)
    assert [t["target"] for t in record["transfers"]] == [str(tiny_llama), str(tiny_llama_b)]
    assert {(r["method"], r["target"]) for r in record["extra_rows"]} == {
        (m, str(tiny_llama_b)) for m in ("base", "prt", "eft")}
    first, second = record["transfers"]
    assert first["ratios"] == record["ratios"] and second["ratios"].keys() == first["ratios"].keys()
    assert second["ratios"]["prt/ft decode time b1"] != first["ratios"]["prt/ft decode time b1"]


def test_limits_are_the_single_models_arithmetic():
    from prt_bench.lm.profile import time_ratios

    # decode at batch 1: target alone 3 ms/token, reward alone 1, PRT 4.4, EFT 5.5; train: FT 2 s, base forward 0.5 s
    # train: FT 2 s, PRT 2.7 s recomputing the base's pass (0.5 s) at the step, 2.1 s with it cached
    t = {("decode", "base", 1): 3.0, ("decode", "reward", 1): 1.0, ("decode", "prt", 1): 4.4,
         ("decode", "eft", 1): 5.5, ("train", "ft", 8): 2.0, ("train", "prt", 8): 2.7, ("train", "forward", 8): 0.5,
         ("train", "prt_cached", 8): 2.1}
    ratios, limits = time_ratios(t, [1], 8)
    assert limits == {"prt/ft decode time b1": 4 / 3, "prt/(base+reward) decode time b1": 1.0,
                      "eft/prt decode time b1": 5 / 4, "eft/(base+2 reward) decode time b1": 1.0,
                      "prt/ft train time": 1.0, "prt/ft train time, base recomputed": 1.25}
    assert ratios["prt/(base+reward) decode time b1"] == 4.4 / 4 and ratios["eft/(base+2 reward) decode time b1"] == 1.1
    assert ratios["prt/ft train time, base recomputed"] == 2.7 / 2 and ratios["eft/prt decode time b1"] == 5.5 / 4.4
    assert ratios["prt/ft train time"] == 2.1 / 2


def test_a_suite_profiles_every_transfer_of_its_first_source():
    from prt_bench.suite.profile import requests
    from prt_bench.suite.schema import load_suite

    todo = requests(load_suite("mini"), {"lm", "vision"}, "cpu")
    assert todo["lm"]["source"]["name"] == "llama-s-v1"
    assert [todo["lm"]["target"]["name"]] + [t["name"] for t in todo["lm"]["targets"]] == [
        "llama-m-v1", "llama-s-v2", "qwen2-s-v1"]
    assert [t["name"] for t in todo["vision"]["targets"]] == ["mini-vit-s-v2", "mini-rn-s-v2"]
