"""Headroom and first-transfer measurements of the mini LM world (the figures in docs/mini-lm.md).

    python -m prt_bench.mini.lm.headroom BASE[,BASE...] zs,ft,prt [--out runs/mini-lm-headroom]

zs: each base alone on mini_gsm; ft: fine-tune it on mini_gsm's train split, then evaluate;
prt: train a PRT reward on it, then evaluate the reward on every base of the family
(`--model prt`, base=<each base>,reward=<the reward>).  Fine-tuning settings: FT below, the
mini suite's (suites/mini.yaml).  Uses the default build (built if
missing), lm-eval's `simple_evaluate` (what `prt-bench lm-eval` runs) and the LM recipes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

FT = {"lr": 1e-3, "max_steps": 300, "batch_size": 32, "max_length": 256, "warmup": 20}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bases", help="comma-separated base names")
    ap.add_argument("what", help="comma-separated: zs, ft, prt")
    ap.add_argument("--out", default="runs/mini-lm-headroom")
    ap.add_argument("--variant", default="default")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(1)
    import prt_bench  # noqa: F401  (registers the prt/eft lm-eval models)
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from prt_bench.io import REPO_ROOT, atomic_write_json
    from prt_bench.lm.train import train_lm
    from prt_bench.mini.lm.build import build_lm

    names, what = args.bases.split(","), args.what.split(",")
    rec = build_lm(args.variant, only=None if "prt" in what else names)  # prt: evaluated on every base
    os.environ["PRT_BENCH_MINI_LM_DATA"] = rec["data_dir"]
    tm = TaskManager(include_path=str(REPO_ROOT / "tasks"), include_defaults=False)
    out = Path(args.out)
    data = rec["data"]["mini_gsm"]["train"]

    def evaluate(tag: str, model: str, model_args: str) -> None:
        t, c = time.time(), time.process_time()
        r = simple_evaluate(model=model, model_args=model_args, tasks=["mini_gsm"], task_manager=tm,
                            batch_size=64, device="cpu")["results"]["mini_gsm"]
        row = {"tag": tag, "strict": r["exact_match,strict-match"], "flex": r["exact_match,flexible-extract"],
               "wall_s": round(time.time() - t, 1), "cpu_s": round(time.process_time() - c, 1)}
        print(json.dumps(row), flush=True)
        atomic_write_json(out / f"{tag}.json", row)

    def train(method: str, name: str) -> str:
        path = out / f"{method}-{name}"
        t, c = time.time(), time.process_time()
        train_lm(method, rec["bases"][name], data, path, progress=False, device="cpu", **FT)
        print(json.dumps({"train": method, "base": name, "wall_s": round(time.time() - t, 1),
                          "cpu_s": round(time.process_time() - c, 1)}), flush=True)
        return str(path)

    for name in names:
        base = rec["bases"][name]
        if "zs" in what:
            evaluate(f"zs-{name}", "hf", f"pretrained={base},dtype=float32")
        if "ft" in what:
            evaluate(f"ft-{name}", "hf", f"pretrained={train('ft', name)},dtype=float32")
        if "prt" in what:
            reward = train("prt", name)
            for target, path in rec["bases"].items():
                evaluate(f"prt-{name}-on-{target}", "prt", f"base={path},reward={reward}")


if __name__ == "__main__":
    main()
