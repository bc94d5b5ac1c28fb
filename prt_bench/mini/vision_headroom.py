"""Does the mini vision world leave headroom?  Zero-shot and FT of every base, and one PRT
reward carried from a source base to every base, through the vision recipes and evaluator.

    python -m prt_bench.mini.vision_headroom --out runs/mini-vision-headroom.json

Prints a Markdown table (the one in docs/mini-vision.md) and writes every number as JSON.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from prt_bench.io import atomic_write_json, environment


def measure(variant: str = "default", source: str = "mini-vit-s-v1", steps: int = 300, lr: float = 1e-3,
            batch_size: int = 128, test_split: str = "test", work: str | os.PathLike = "runs/mini-vision-headroom",
            cache_root=None, progress: bool = True) -> dict:
    from prt_bench.mini.vision import build_vision_world, downstream
    from prt_bench.vision.eval import eval_vision
    from prt_bench.vision.train import train_vision

    task = downstream(variant)
    work = Path(work)
    t0 = time.perf_counter()
    bases = build_vision_world(cache_root=cache_root, variant=variant, progress=progress)
    if source not in bases:
        raise ValueError(f"source {source!r} is not a base of the mini vision world: {list(bases)}")
    train = dict(steps=steps, lr=lr, batch_size=batch_size, split=task["train_split"], progress=progress)

    def acc(method: str, target, **kw) -> float:
        return eval_vision(method, target, task["dataset"], split=test_split, progress=False, **kw)["acc1"]

    reward = train_vision("prt", bases[source], task["dataset"], work / f"prt-{source}", **train)
    rows = {}
    for name, path in bases.items():
        ft = train_vision("ft", path, task["dataset"], work / f"ft-{name}", **train)
        rows[name] = {"zeroshot": acc("zeroshot", path), "ft": acc("ft", ft), "prt": acc("prt", path, reward=reward)}
    reward_only = acc("reward", bases[source], reward=reward)
    return {"variant": variant, "source": source, "train": train, "test_split": test_split, "rows": rows,
            "reward_only": reward_only, "wall_s": time.perf_counter() - t0, "environment": environment()}


def table(result: dict) -> str:
    lines = [f"| base | zero-shot | FT | PRT (reward from {result['source']}) |", "|---|---|---|---|"]
    for name, row in result["rows"].items():
        lines.append(f"| {name} | {row['zeroshot']:.3f} | {row['ft']:.3f} | {row['prt']:.3f} |")
    lines.append(f"\nreward only (softmax of r, {result['source']}): {result['reward_only']:.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="default")
    parser.add_argument("--source", default="mini-vit-s-v1")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--work", default="runs/mini-vision-headroom")
    parser.add_argument("--out", default="runs/mini-vision-headroom.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = measure(args.variant, args.source, args.steps, args.lr, args.batch_size, args.test_split, args.work)
    atomic_write_json(args.out, result)
    print(table(result))


if __name__ == "__main__":
    main()
