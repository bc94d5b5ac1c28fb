"""`profile vision`: FT vs PRT training and FT/PRT/EFT inference, side by side, in the agreed schema."""

from __future__ import annotations

import json

from prt_bench.vision.profile import profile_vision


def test_profile_reports_every_method_with_ratios_in_the_profile_schema(tmp_path):
    out = tmp_path / "vision.json"
    result = profile_vision("prt-tiny-vit", train_batch=8, infer_batch=8, steps=2, warmup=2, progress=False, out=out)
    assert json.loads(out.read_text())["schema"] == "prt-bench/profile/1"
    assert result["modality"] == "vision" and result["device"] == "cpu"
    assert {(r["phase"], r["method"]) for r in result["rows"]} == {
        ("train", "ft"), ("train", "prt"), ("inference", "ft"), ("inference", "reward"), ("inference", "prt"),
        ("inference", "eft")}
    for row in result["rows"]:
        assert row["time_s"] > 0 and row["peak_mem_mb"] > 0 and row["batch"] == 8
    assert {"prt/ft train time", "prt/eft inference time", "prt/ft train memory"} <= set(result["ratios"])
    assert set(result["limits"]) <= set(result["ratios"]) and "prt/ft inference time" in result["limits"]
    # PRT trains next to a frozen second tower; EFT holds one tower more than PRT at inference.
    held = {(r["phase"], r["method"]): r["held_mb"] for r in result["rows"]}
    assert held[("train", "prt")] > held[("train", "ft")]
    assert held[("inference", "ft")] < held[("inference", "prt")] < held[("inference", "eft")]


def test_limits_are_the_single_towers_arithmetic():
    from prt_bench.vision.profile import time_ratios

    # an FT step 2 s, the base's forward on its batch 1 s; towers: target 4 s, source 1 s
    train = {"ft": 2.0, "prt": 2.2, "prt_uncached": 3.3, "forward": 1.0}
    infer = {"ft": 4.0, "reward": 1.0, "prt": 5.5, "eft": 6.0}
    ratios, limits = time_ratios(train, infer)
    assert limits == {"prt/ft train time": 1.0, "prt_uncached/ft train time": 1.5, "prt/ft inference time": 1.25,
                      "prt/eft inference time": 5 / 6, "prt/(ft+reward) inference time": 1.0,
                      "eft/(ft+2 reward) inference time": 1.0}
    assert ratios["prt/(ft+reward) inference time"] == 1.1 and ratios["prt/ft inference time"] == 5.5 / 4
    assert ratios["eft/(ft+2 reward) inference time"] == 1.0 and ratios["prt_uncached/ft train time"] == 3.3 / 2


def test_profile_covers_every_target_of_the_reward():
    result = profile_vision("prt-tiny-vit", "prt-tiny-vit", targets=("prt-small-vit",), train_batch=4, infer_batch=4,
                            steps=1, warmup=2, progress=False)
    assert [t["target"] for t in result["transfers"]] == ["prt-tiny-vit", "prt-small-vit"]
    extra = {(r["method"], r["target"]) for r in result["extra_rows"] if r["phase"] == "inference"}
    assert extra == {(m, "prt-small-vit") for m in ("ft", "prt", "eft")}
    first, second = result["transfers"]
    assert first["ratios"] == result["ratios"] and second["ratios"].keys() == first["ratios"].keys()
    # the bigger target's tower costs more: PRT adds less on top of its FT
    assert second["limits"]["prt/ft inference time"] < first["limits"]["prt/ft inference time"]
