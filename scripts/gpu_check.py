"""The steps of scripts/gpu-check.sh: each one a command run with a time limit, its outcome and
what it measured written to OUT/gpu-check.json after every step (a run cut short keeps the
steps it finished).  Sized for well under 10 minutes on one H200 from a bare machine."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget-s", type=float, default=540)
    ap.add_argument("--rehearse", action="store_true", help="Run every step on the CPU at toy sizes (to check the "
                    "script itself before GPU time is spent on it).")
    args = ap.parse_args()
    device = "cpu" if args.rehearse else "cuda"
    out, work = args.out, args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "steps": {}}
    deadline = time.monotonic() + args.budget_s
    py = [sys.executable, "-m", "prt_bench"]
    bindir = Path(sys.executable).parent  # torchrun and accelerate beside this Python when it is a venv's
    launcher = {n: str(bindir / n) if (bindir / n).exists() else n for n in ("torchrun", "accelerate")}

    def save() -> None:
        tmp = out / "gpu-check.json.tmp"
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(out / "gpu-check.json")

    def step(name: str, cmd: list[str], limit: float, measure=None, env: dict | None = None) -> bool:
        left = deadline - time.monotonic()
        if left < 20:
            report["steps"][name] = {"status": "not run", "why": "the check's time budget is spent"}
            save()
            return False
        start = time.monotonic()
        log = out / f"{name}.log"
        try:
            with open(log, "w") as f:
                proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=min(limit, left),
                                      env={**os.environ, **(env or {})})
            status = "passed" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            status = f"failed (over {min(limit, left):.0f} s)"
        entry = {"status": status, "wall_s": round(time.monotonic() - start, 1), "command": " ".join(cmd),
                 "log_tail": log.read_text(errors="replace").splitlines()[-5:]}
        if status == "passed" and measure:
            try:
                entry["measured"] = measure()
            except Exception as e:  # noqa: BLE001 - a step that ran but measured nothing says so
                entry["measured"] = f"could not read: {type(e).__name__}: {e}"
        report["steps"][name] = entry
        save()
        print(f"{name}: {status} in {entry['wall_s']} s", flush=True)
        return status == "passed"

    import torch

    gpus = torch.cuda.device_count()
    report["machine"] = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": gpus,
                         "names": [torch.cuda.get_device_name(i) for i in range(gpus)],
                         "bf16": bool(gpus and torch.cuda.is_bf16_supported())}
    save()
    if args.rehearse:
        gpus = 1
    if not gpus:
        report["steps"]["cuda"] = {"status": "failed", "why": "no CUDA device visible"}
        save()
        return 1

    # tiny models and data for the single-path steps
    step("build-tiny", [sys.executable, "-c", f"""
import json
from pathlib import Path
from prt_bench.lm.tiny import build_tiny_lm, byte_level_tokenizer
w = Path({str(work)!r})
tok = byte_level_tokenizer()
size = dict(hidden=64, layers=2) if {args.rehearse!r} else dict(hidden=256, layers=4)
build_tiny_lm(w / "base", "llama", tok, seed=0, **size)
build_tiny_lm(w / "target", "llama", tok, seed=1, **{{**size, "hidden": size["hidden"] * 3 // 2}})
"""], 120)
    base, target, data = work / "base", work / "target", REPO / "suites" / "data" / "smoke_sft.jsonl"
    common = ["--data", str(data), "--max-steps", "20", "--batch-size", "16", "--max-length", "128", "--lr", "1e-4",
              "--device", device, "--mixed-precision", "bf16", "--gradient-checkpointing"]

    def manifest(path: Path):
        return lambda: {k: json.loads((path / "prt_manifest.json").read_text()).get(k)
                        for k in ("initial_loss", "final_loss", "wall_s", "device")}

    step("train-ft-bf16", [*py, "train", "lm", "--method", "ft", "--base", str(base), "--out", str(work / "ft"),
                           *common], 180, manifest(work / "ft"))
    step("train-prt-bf16", [*py, "train", "lm", "--method", "prt", "--base", str(base), "--out",
                            str(work / "reward"), *common], 180, manifest(work / "reward"))

    def lm_eval_result(path: Path):
        def read():
            (found,) = path.rglob("results_*.json")
            r = json.loads(found.read_text())
            return {"results": r["results"], "batch_size": r["config"].get("prt_bench_batch_size")}
        return read

    tasks = ["--tasks", "gsm8k_local_zeroshot", "--include_path", "tasks", "--limit", "16", "--batch_size", "auto"]
    step("lm-eval-prt-bf16", [*py, "lm-eval", "--model", "prt", "--model_args",
                              f"base={target},reward={work / 'reward'},dtype=bfloat16", *tasks,
                              "--output_path", str(work / "eval-prt")], 180, lm_eval_result(work / "eval-prt"))
    step("lm-eval-eft-bf16", [*py, "lm-eval", "--model", "eft", "--model_args",
                              f"base={target},ft={work / 'ft'},pt={base},dtype=bfloat16", *tasks,
                              "--output_path", str(work / "eval-eft")], 180, lm_eval_result(work / "eval-eft"))

    def suite_summary():
        cells = [json.loads(p.read_text()) for p in (work / "results" / "smoke" / "cells").glob("*.json")]
        return {"cells": len(cells), "methods": sorted({c["method"] for c in cells}),
                "devices": sorted({c["environment"].get("device", "?") for c in cells})}

    # the per-GPU pool on every visible GPU: the smoke suite's LM and vision cells, each in its GPU's process
    step("smoke-suite-per-gpu", [*py, "run", "--suite", "smoke", *(["--gpus", "none"] if args.rehearse else []),
                                 "--results", str(work / "results"), "--runs",
                                 str(work / "runs"), "--no-report", "--no-compare", "--no-profile", "--no-progress"],
         300, suite_summary)
    if gpus >= 2 or args.rehearse:
        procs = 2 if args.rehearse else gpus  # rehearsal: two gloo processes on the CPU
        step("torchrun-fsdp-prt", [launcher["torchrun"], "--nproc_per_node", str(procs), "-m", "prt_bench",
                                   "train", "lm",
                                   "--method", "prt", "--base", str(target), "--out", str(work / "reward-fsdp"),
                                   "--strategy", "fsdp", *common], 240, manifest(work / "reward-fsdp"))
        step("lm-eval-data-parallel", [launcher["accelerate"], "launch", *(["--multi_gpu"] if args.rehearse else []),
                                       "--num_processes", str(procs), "-m", "prt_bench",
                                       "lm-eval", "--model", "prt", "--model_args",
                                       f"base={target},reward={work / 'reward'},dtype=bfloat16", *tasks,
                                       "--output_path", str(work / "eval-dp")], 240, lm_eval_result(work / "eval-dp"))
    else:
        for name in ("torchrun-fsdp-prt", "lm-eval-data-parallel"):
            report["steps"][name] = {"status": "not run", "why": f"{gpus} GPU: needs two or more"}
        save()

    def profile(path: Path):
        return lambda: json.loads(path.read_text())
    small = ["--hidden", "64", "--layers", "2", "--batch-sizes", "1,4", "--new-tokens", "8"] if args.rehearse else []
    step("profile-lm", [*py, "profile", "lm", "--device", device, "--dtype", "bfloat16", "--repeats", "3", *small,
                        "--out", str(out / "profile-lm.json")], 240, profile(out / "profile-lm.json"))
    small = ["--train-batch", "8", "--infer-batch", "8"] if args.rehearse else []
    step("profile-vision", [*py, "profile", "vision", "--device", device, "--steps", "5", *small,
                            "--out", str(out / "profile-vision.json")], 240, profile(out / "profile-vision.json"))
    failed = [n for n, s in report["steps"].items() if s["status"].startswith("failed")]
    not_run = [n for n, s in report["steps"].items() if s["status"] == "not run"]
    report["summary"] = {"passed": sum(s["status"] == "passed" for s in report["steps"].values()),
                         "failed": failed, "not_run": not_run}
    save()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
