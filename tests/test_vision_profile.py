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
        ("train", "ft"), ("train", "prt"), ("inference", "ft"), ("inference", "prt"), ("inference", "eft")}
    for row in result["rows"]:
        assert row["time_s"] > 0 and row["peak_mem_mb"] > 0 and row["batch"] == 8
    assert {"prt/ft train time", "prt/eft inference time", "prt/ft train memory"} <= set(result["ratios"])
    # PRT trains next to a frozen second tower; EFT holds one tower more than PRT at inference.
    held = {(r["phase"], r["method"]): r["held_mb"] for r in result["rows"]}
    assert held[("train", "prt")] > held[("train", "ft")]
    assert held[("inference", "ft")] < held[("inference", "prt")] < held[("inference", "eft")]
