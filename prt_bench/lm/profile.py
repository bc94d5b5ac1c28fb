"""What PRT costs next to its alternatives, measured side by side in one run.

Decoding (per new token, KV caches kept, the same ``generate`` the lm-eval models use): the
base alone, the reward alone, PRT (base + reward) and EFT (base + ft + pt), at each batch size.
Training (per optimizer step, the same losses as the recipes): FT vs PRT.

Each measurement runs in a fresh subprocess so that its peak memory is its own: on CPU the
peak is the process's resident-set high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs``) minus its resident set once libraries are imported and warmed up on a
throwaway miniature model (lazy imports and kernel set-up otherwise add ~170 MB of noise),
before any measured model is loaded; on CUDA ``torch.cuda.max_memory_allocated``.
Times are medians over repeats after a warm-up.  Without model folders the models are
~10M-parameter Llamas built on the fly (``prt_bench.lm.tiny``), no hub needed.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

SCHEMA = "prt-bench/profile/1"
DEFAULT_SIZE = dict(hidden=256, layers=10, heads=4, kv_heads=2, max_positions=1024)  # ~9.6M parameters


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _warm_up(model_paths: list[str], device: str) -> None:
    """Pay lazy imports and kernel set-up on a throwaway model, outside the measured memory."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from prt_bench.lm.lm_eval_models import generate
    from prt_bench.lm.tiny import tiny_config

    for path in model_paths:  # import each architecture's modeling module
        config = AutoConfig.from_pretrained(path)
        AutoModelForCausalLM._model_mapping[type(config)]
    mini = AutoModelForCausalLM.from_config(tiny_config("llama", 300, hidden=16, layers=1, heads=2, kv_heads=1))
    mini.to(device)
    generate([mini], lambda logits: torch.log_softmax(logits[0], -1), [[1, 2, 3], [4]], max_new_tokens=3,
             pad_id=0, eos_id=None)
    ids = torch.tensor([[1, 2, 3]], device=device)
    mini(input_ids=ids, labels=ids).loss.backward()
    torch.optim.AdamW(mini.parameters()).step()


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(job: dict[str, Any]) -> dict[str, Any]:
    """One measurement, run inside its own process."""
    import torch

    from prt_bench import prt
    from prt_bench.lm.lm_eval_models import generate
    from prt_bench.lm.load import load_causal_lm
    from prt_bench.lm.train import make_optimizer, prepare_models, training_loss

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    device = job["device"]
    cuda = device.startswith("cuda")
    torch.manual_seed(0)
    _warm_up(job["models"], device)
    _reset_peak_rss()
    baseline = _rss_mb()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    if job["phase"] == "decode":
        models = [load_causal_lm(p, device=device, dtype=job["dtype"]) for p in job["models"]]
        combine = {
            "single": lambda logits: torch.log_softmax(logits[0].float(), -1),
            "prt": lambda logits: prt.prt_logprobs(logits[0], logits[1]),
            "eft": lambda logits: prt.eft_logprobs(*logits),
        }[job["rule"]]
        vocab = min(m.get_output_embeddings().weight.shape[0] for m in models)
        prompts = torch.randint(0, min(vocab, 256), (job["batch"], job["prompt_len"])).tolist()

        def run(n: int):
            # eos_id=None: every row decodes exactly n tokens
            generate(models, combine, prompts, max_new_tokens=n, pad_id=0, eos_id=None)
            if cuda:
                torch.cuda.synchronize()

        n = job["new_tokens"]
        full = _median_time(lambda: run(n), job["repeats"])
        prefill = _median_time(lambda: run(1), job["repeats"])
        seconds = (full - prefill) / (n - 1)
    else:
        run_models = prepare_models(job["method"], job["models"][0], device=device, dtype=job["dtype"])
        model, frozen = run_models.model, run_models.base
        optimizer, _ = make_optimizer(model, 1e-5, 0.0, 10**6, 0, "constant")
        vocab = model.get_output_embeddings().weight.shape[0]
        ids = torch.randint(0, min(vocab, 256), (job["batch"], job["seq_len"]), device=device)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

        def step():
            loss = training_loss(job["method"], model, frozen, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()

        seconds = _median_time(step, job["repeats"])
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _peak_rss_mb() - baseline
    return {"time_s": seconds, "peak_mem_mb": peak}


def _child(job: dict[str, Any], conn) -> None:
    try:
        conn.send(_measure(job))
    except BaseException as e:  # report, don't hang the parent
        conn.send({"error": f"{type(e).__name__}: {e}"})
    finally:
        conn.close()


def _isolated(job: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(job, child))
    proc.start()
    child.close()
    result = parent.recv()
    proc.join()
    if "error" in result:
        raise RuntimeError(f"profiling {job['phase']} {job['method']} failed: {result['error']}")
    return result


def default_models(root: Path, size: dict[str, int]) -> dict[str, Path]:
    """Four Llamas of one size on the shared byte tokenizer: base, reward, ft, pt."""
    from prt_bench.lm.tiny import build_tiny_lm, byte_level_tokenizer

    tok = byte_level_tokenizer()
    return {name: build_tiny_lm(root / name, "llama", tok, seed=i, **size)
            for i, name in enumerate(("base", "reward", "ft", "pt"))}


def profile_lm(base: str | None = None, reward: str | None = None, ft: str | None = None, pt: str | None = None,
               *, batch_sizes: tuple[int, ...] = (1, 16), prompt_len: int = 32, new_tokens: int = 32,
               train_batch: int = 8, train_seq_len: int = 128, repeats: int = 5, device: str | None = None,
               dtype: str | None = None, threads: int | None = None, size: dict[str, int] | None = None,
               isolate: bool = True, progress: bool = True) -> dict[str, Any]:
    """Run every measurement and return the profile record (schema ``prt-bench/profile/1``).

    Any of reward/ft/pt left out defaults to ``base`` (the cost depends on the architecture,
    not the weights); with no ``base`` four ~10M-parameter Llamas are built.  ``isolate=False``
    measures in this process (quicker; memory figures then carry what earlier ones left behind).
    """
    import torch
    from rich.progress import track

    from prt_bench.io import environment

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="prt-profile-") as tmp:
        if base is None:
            built = default_models(Path(tmp), size or DEFAULT_SIZE)
            paths = {k: str(v) for k, v in built.items()}
        else:
            paths = {"base": base, "reward": reward or base, "ft": ft or base, "pt": pt or base}
        decode = {"base": (["base"], "single"), "reward": (["reward"], "single"),
                  "prt": (["base", "reward"], "prt"), "eft": (["base", "ft", "pt"], "eft")}
        common = {"device": device, "dtype": dtype, "threads": threads, "repeats": repeats}
        jobs = [{**common, "phase": "decode", "method": m, "models": [paths[n] for n in names], "rule": rule,
                 "batch": b, "prompt_len": prompt_len, "new_tokens": new_tokens}
                for b in batch_sizes for m, (names, rule) in decode.items()]
        jobs += [{**common, "phase": "train", "method": m, "models": [paths["base"]], "batch": train_batch,
                  "seq_len": train_seq_len} for m in ("ft", "prt")]
        rows = []
        for job in track(jobs, description="profiling", disable=not progress):
            measured = _isolated(job) if isolate else _measure(job)
            rows.append({"phase": job["phase"], "method": job["method"], "batch": job["batch"], **measured})

    def row(phase, method, batch):
        return next(r for r in rows if (r["phase"], r["method"], r["batch"]) == (phase, method, batch))

    ratios: dict[str, float] = {}
    for b in batch_sizes:
        t = {m: row("decode", m, b)["time_s"] for m in decode}
        mem = {m: row("decode", m, b)["peak_mem_mb"] for m in decode}
        ratios[f"prt/(base+reward) decode time b{b}"] = t["prt"] / (t["base"] + t["reward"])
        ratios[f"eft/prt decode time b{b}"] = t["eft"] / t["prt"]
        ratios[f"prt/eft decode memory b{b}"] = mem["prt"] / mem["eft"]
    ft_row, prt_row = row("train", "ft", train_batch), row("train", "prt", train_batch)
    ratios["prt/ft train time"] = prt_row["time_s"] / ft_row["time_s"]
    ratios["prt/ft train memory"] = prt_row["peak_mem_mb"] / ft_row["peak_mem_mb"]
    return {
        "schema": SCHEMA,
        "modality": "lm",
        "device": device,
        "memory_measure": "torch.cuda.max_memory_allocated" if device.startswith("cuda")
        else "peak RSS (VmHWM) minus RSS after imports and a warm-up"
        + (", one subprocess per measurement" if isolate else ", all in one process"),
        "models": paths if base is not None else {"built": "llama", **(size or DEFAULT_SIZE)},
        "settings": {"batch_sizes": list(batch_sizes), "prompt_len": prompt_len, "new_tokens": new_tokens,
                     "train_batch": train_batch, "train_seq_len": train_seq_len, "repeats": repeats,
                     "dtype": dtype, "threads": threads or torch.get_num_threads()},
        "rows": rows,
        "ratios": ratios,
        "targets": {"prt/(base+reward) decode time": "<= 1.10", "eft/prt decode time": ">= 1.3",
                    "prt/ft train time": "<= 1.15"},
        "environment": environment(device),
    }


def print_profile(record: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"LM cost profile ({record['device']}; memory: {record['memory_measure']})")
    for col in ("phase", "method", "batch", "time", "peak memory (MB)"):
        table.add_column(col, justify="right" if col in ("batch", "time", "peak memory (MB)") else "left")
    for r in record["rows"]:
        unit = "ms/token" if r["phase"] == "decode" else "ms/step"
        table.add_row(r["phase"], r["method"], str(r["batch"]), f"{1000 * r['time_s']:.2f} {unit}",
                      f"{r['peak_mem_mb']:.1f}")
    console.print(table)
    ratios = Table(title="ratios (targets: prt/(base+reward) decode <= 1.10, eft/prt decode >= 1.3, prt/ft train <= 1.15)")
    ratios.add_column("ratio")
    ratios.add_column("value", justify="right")
    for k, v in record["ratios"].items():
        ratios.add_row(k, f"{v:.3f}")
    console.print(ratios)
