"""What PRT costs next to its alternatives, measured side by side in one run.

Decoding (per new token, KV caches kept, the same ``generate`` the lm-eval models use): the
base alone, the reward alone, PRT (base + reward) and EFT (base + ft + pt), at each batch size;
with ``targets`` the same for every further target (a suite's other transfers: ``extra_rows``
and ``transfers``).  Training (per optimizer step, the same losses as the recipes): FT, PRT with
the base's pass computed once (``prt_cached``, what training does within its budget, see
``prt_bench.lm.base_pass``) and recomputed at the step (``prt``, its fallback), and that
recomputation alone (``forward``).

Every time ratio comes with its physical limit, from the single models measured in the same
run (T: the target alone, S: the reward alone -- EFT's FT and pre-trained models have the
source's architecture too; F: an FT step, B: the base's pass of a batch): PRT/FT(target)
(T + S) / T, PRT over its two models 1, EFT/PRT (T + 2S) / (T + S), EFT over its three models
1, PRT/FT training (F + B) / F, and 1 with the base's pass cached.

Peak memory is measured for each workload in a fresh subprocess, so that it is its own: on
CPU the process's resident-set high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs``) minus its resident set once libraries are imported and warmed up on
a throwaway miniature model (lazy imports and kernel set-up otherwise add ~170 MB of noise),
before any measured model is loaded; on CUDA ``torch.cuda.max_memory_allocated``.  Times come
from one further process that runs the workloads round-robin, so that load from other
processes on a shared machine falls on all of them alike.
Times are medians over repeats after a warm-up.  Without model folders the models are
~10M-parameter Llamas built on the fly (``prt_bench.lm.tiny``), no hub needed.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from prt_bench.io import PROFILE_SCHEMA

DEFAULT_SIZE = dict(hidden=256, layers=10, heads=4, kv_heads=2, max_positions=1024)  # ~9.6M parameters


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


def _train_batch(job: dict[str, Any], model) -> dict[str, Any]:
    """The seeded batch every train-phase job of a profile runs on (the same for FT, PRT and the
    base's forward)."""
    import torch

    vocab = model.get_output_embeddings().weight.shape[0]
    ids = torch.randint(0, min(vocab, 256), (job["batch"], job["seq_len"]), generator=torch.Generator().manual_seed(0))
    ids = ids.to(job["device"])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone(),
            "index": torch.arange(len(ids))}


def _base_pass(frozen, batch: dict[str, Any], cached: bool):
    """The ``BasePass`` training would use on this batch: computed once (``cached``) or at each step."""
    from prt_bench.lm.base_pass import BasePass
    from prt_bench.lm.train import eval_mode

    examples = [(row, row) for row in batch["input_ids"].cpu().tolist()]
    vocab = frozen.get_output_embeddings().weight.shape[0]

    def forward(ids, keep):
        with eval_mode(frozen):
            return frozen(input_ids=ids, logits_to_keep=keep).logits

    return BasePass(forward, examples, vocab, device=batch["input_ids"].device,
                    budget_mb=float("inf") if cached else 0.0).prepare()


def _workload(job: dict[str, Any], load) -> dict[str, Any]:
    """The callables one job times: decode n tokens / 1 token (prefill), or one train step."""
    import torch

    from prt_bench import prt
    from prt_bench.lm.lm_eval_models import generate
    from prt_bench.lm.train import make_optimizer, prepare_models, training_loss

    device = job["device"]
    cuda = device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    if job["method"] == "forward":  # the frozen base's pass of one batch, as training's fallback runs it
        frozen = load(job["models"][0])
        batch = _train_batch(job, frozen)
        base_pass = _base_pass(frozen, batch, cached=False)
        span = (0, batch["input_ids"].shape[1] - 1)

        def forward():
            base_pass.batch(batch["index"].tolist(), *span)
            sync()

        return {"step": forward}
    if job["phase"] == "decode":
        models = [load(p) for p in job["models"]]
        combine = {
            "single": lambda logits: torch.log_softmax(logits[0].float(), -1),
            "prt": lambda logits: prt.prt_logprobs(logits[0], logits[1]),
            "eft": lambda logits: prt.eft_logprobs(*logits),
        }[job["rule"]]
        vocab = min(m.get_output_embeddings().weight.shape[0] for m in models)
        prompts = torch.randint(0, min(vocab, 256), (job["batch"], job["prompt_len"]),
                                generator=torch.Generator().manual_seed(0)).tolist()

        def decode(n: int):
            # eos_id=None: every row decodes exactly n tokens
            generate(models, combine, prompts, max_new_tokens=n, pad_id=0, eos_id=None)
            sync()

        return {"full": lambda: decode(job["new_tokens"]), "prefill": lambda: decode(1)}

    method, cached = ("prt", True) if job["method"] == "prt_cached" else (job["method"], False)
    # with the pass cached, training holds no frozen copy: the untrained reward computed the pass
    trainee = prepare_models(method, job["models"][0], device=device, dtype=job["dtype"], frozen_base=not cached)
    model, frozen = trainee.model, trainee.base
    optimizer, _ = make_optimizer(model, 1e-5, 0.0, 10**6, 0, "constant")
    batch = _train_batch(job, model)
    if method == "prt":
        frozen = _base_pass(model if cached else frozen, batch, cached=cached)

    def step():
        training_loss(method, model, frozen, batch).backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()

    return {"step": step}


def _memory(job: dict[str, Any]) -> float:
    """Peak memory (MB) of one job: its models, caches, activations, gradients, optimizer state."""
    import torch

    from prt_bench.lm.load import load_causal_lm
    from prt_bench.meter import PeakMemory

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    cuda = job["device"].startswith("cuda")
    _warm_up(job["models"], job["device"])
    if cuda:
        torch.cuda.empty_cache()
    with PeakMemory(job["device"]) as meter:
        work = _workload(job, lambda p: load_causal_lm(p, device=job["device"], dtype=job["dtype"]))
        for fn in work.values():
            fn()
            fn()  # the second train step is the first with optimizer state
    return meter.growth_mb


def _timings(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Wall and CPU seconds per token (decode) or per step (train) of every job: each repeat's
    (``wall_repeats``, ``cpu_repeats``) and their medians (``wall``, ``cpu``).

    The jobs run round-robin, one repeat of each in turn, so that load from other processes
    on a shared machine falls on all of them alike instead of on whichever ran at a bad time,
    and the ratios are taken repeat by repeat (``ratio_record``).  A decode repeat's per-token
    time is (n tokens - 1 token) / (n - 1), both decoded back to back.  CPU seconds (this
    process's, all its threads) are less disturbed by such load than wall time.
    """
    import torch

    from prt_bench.lm.load import load_causal_lm

    if jobs[0]["threads"]:
        torch.set_num_threads(jobs[0]["threads"])
    loaded: dict[str, Any] = {}

    def load(path: str):
        if path not in loaded:
            loaded[path] = load_causal_lm(path, device=jobs[0]["device"], dtype=jobs[0]["dtype"])
        return loaded[path]

    works = [_workload(job, load) for job in jobs]
    samples: list[dict[tuple[str, str], list[float]]] = [{} for _ in works]
    for fn in (fn for w in works for fn in w.values()):
        fn()  # warm-up: first calls allocate and pick kernels
    for _ in range(jobs[0]["repeats"]):
        for work, sample in zip(works, samples):
            for key, fn in work.items():
                wall, cpu = time.perf_counter(), time.process_time()
                fn()
                sample.setdefault((key, "wall"), []).append(time.perf_counter() - wall)
                sample.setdefault((key, "cpu"), []).append(time.process_time() - cpu)
    out = []
    for job, sample in zip(jobs, samples):
        per: dict[str, Any] = {}
        for clock in ("wall", "cpu"):
            repeats = (sample[("step", clock)] if job["phase"] == "train" else
                       [(full - one) / (job["new_tokens"] - 1)
                        for full, one in zip(sample[("full", clock)], sample[("prefill", clock)])])
            per[clock], per[f"{clock}_repeats"] = statistics.median(repeats), repeats
        out.append(per)
    return out


def _isolated(fn_name: str, arg: Any) -> Any:
    """``fn_name(arg)`` in a fresh, spawned process (no state shared with this one; the timings
    run there: children of the fork server below ran the same decode ~1.7x slower here)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        try:
            return pool.submit(globals()[fn_name], arg).result()
        except Exception as e:
            raise RuntimeError(f"profiling failed in {fn_name}: {type(e).__name__}: {e}") from e


def _context(jobs: list[dict[str, Any]]):
    """Fresh processes forked from a server that has imported torch, transformers and the jobs'
    model classes once (importing a transformers model class alone takes ~10 s on a small CPU),
    and never ran a torch operation -- each child starts clean and its own."""
    import json

    ctx = mp.get_context("forkserver")
    modules = ["torch", "transformers", "prt_bench.lm.lm_eval_models", "prt_bench.lm.train"]
    for path in {p for job in jobs for p in job["models"]}:
        try:
            model_type = json.loads((Path(path) / "config.json").read_text())["model_type"]
        except (OSError, ValueError, KeyError):
            continue
        modules.append(f"transformers.models.{model_type}.modeling_{model_type}")
    ctx.set_forkserver_preload(sorted(set(modules)))  # takes effect when the server starts
    return ctx


def default_models(root: Path, size: dict[str, int]) -> dict[str, Path]:
    """Four Llamas of one size on the shared byte tokenizer: base, reward, ft, pt."""
    from prt_bench.lm.tiny import build_tiny_lm, byte_level_tokenizer

    tok = byte_level_tokenizer()
    return {name: build_tiny_lm(root / name, "llama", tok, seed=i, **size)
            for i, name in enumerate(("base", "reward", "ft", "pt"))}


def profile_lm(base: str | None = None, reward: str | None = None, ft: str | None = None, pt: str | None = None,
               *, trainee: str | None = None, targets: tuple[str, ...] = (), batch_sizes: tuple[int, ...] = (1, 16),
               prompt_len: int = 32, new_tokens: int = 32, train_batch: int = 8, train_seq_len: int = 128,
               repeats: int = 5, device: str | None = None, dtype: str | None = None, threads: int | None = None,
               size: dict[str, int] | None = None, isolate: bool = True, progress: bool = True) -> dict[str, Any]:
    """Run every measurement and return the profile record (schema ``prt-bench/profile/1``).

    Any of reward/ft/pt left out defaults to ``base`` (the cost depends on the architecture,
    not the weights); with no ``base`` four ~10M-parameter Llamas are built.  ``trainee`` is the
    model whose FT and PRT steps are timed (default ``base``; PRT trains the reward, so a suite
    profiles its source there).  ``targets``: further bases decoded with the same reward, ft
    and pt (their rows in ``extra_rows``; every target's ratios in ``transfers``).
    ``isolate=False`` measures in this process (quicker; memory figures then carry what earlier
    ones left behind).
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
        if trainee is not None:
            paths["trainee"] = trainee
        all_targets = [paths["base"], *[t for t in targets if t != paths["base"]]]
        common = {"device": device, "dtype": dtype, "threads": threads, "repeats": repeats}
        def decode(method: str, target: str | None, models: list[str], rule: str, batch: int) -> dict[str, Any]:
            return {**common, "phase": "decode", "method": method, "target": target, "models": models, "rule": rule,
                    "batch": batch, "prompt_len": prompt_len, "new_tokens": new_tokens}

        jobs = []
        for b in batch_sizes:  # the reward alone once; each target alone, with PRT and with EFT
            jobs.append(decode("reward", None, [paths["reward"]], "single", b))
            for t in all_targets:
                jobs += [decode("base", t, [t], "single", b), decode("prt", t, [t, paths["reward"]], "prt", b),
                         decode("eft", t, [t, paths["ft"], paths["pt"]], "eft", b)]
        trained = paths.get("trainee", paths["base"])
        jobs += [{**common, "phase": "train", "method": m, "target": None, "models": [trained], "batch": train_batch,
                  "seq_len": train_seq_len} for m in ("ft", "prt", "prt_cached", "forward")]
        run = (lambda name, arg: _isolated(name, arg)) if isolate else (lambda name, arg: globals()[name](arg))
        if isolate:  # each in a fresh process; two at once (a process's peak is its own)
            memory = _isolated_many("_memory", jobs, progress)
        else:
            memory = [run("_memory", job) for job in track(jobs, description="peak memory", disable=not progress)]
        if progress:
            print(f"timing {len(jobs)} workloads round-robin, {repeats} repeats ...", flush=True)
        seconds = run("_timings", jobs)
        measured = [({"phase": job["phase"], "method": job["method"], "batch": job["batch"], "time_s": t["wall"],
                      "cpu_s": t["cpu"], "peak_mem_mb": m, "time_s_repeats": t["wall_repeats"],
                      "cpu_s_repeats": t["cpu_repeats"]}, job["target"]) for job, t, m in zip(jobs, seconds, memory)]

    def rows_for(target: str) -> list[dict[str, Any]]:
        return [r for r, t in measured if t in (None, target)]

    transfers = [{"target": target, **ratio_record(rows_for(target), batch_sizes, train_batch, device)}
                 for target in all_targets]
    return {
        "schema": PROFILE_SCHEMA,
        "modality": "lm",
        "device": device,
        "memory_measure": "torch.cuda.max_memory_allocated" if device.startswith("cuda")
        else "peak RSS (VmHWM) over RSS after imports and a warm-up"
        + (", one subprocess per measurement" if isolate else ", all in one process"),
        "models": paths if base is not None else {"built": "llama", **(size or DEFAULT_SIZE)},
        "settings": {"batch_sizes": list(batch_sizes), "prompt_len": prompt_len, "new_tokens": new_tokens,
                     "train_batch": train_batch, "train_seq_len": train_seq_len, "repeats": repeats,
                     "dtype": dtype, "threads": threads or torch.get_num_threads()},
        "rows": rows_for(all_targets[0]),
        "extra_rows": [{**r, "target": t} for r, t in measured if t not in (None, all_targets[0])],
        **{k: v for k, v in transfers[0].items() if k != "target"},
        "transfers": transfers,
        "environment": environment(device),
    }


def ratio_record(rows: list[dict[str, Any]], batch_sizes, train_batch: int, device: str) -> dict[str, Any]:
    """One target's ratios and limits (wall time and memory; CPU seconds off a GPU) from its rows."""
    def row(phase, method, batch):
        return next(r for r in rows if (r["phase"], r["method"], r["batch"]) == (phase, method, batch))

    def times(key: str) -> tuple[dict[str, float], dict[str, float]]:
        """Each ratio and limit as the median over repeats of that repeat's (the workloads of one
        repeat ran one after another: slow drifts of a shared machine cancel); from the medians
        when the rows hold no repeats."""
        keyed = lambda i: {(r["phase"], r["method"], r["batch"]): (  # noqa: E731
            r[key] if i is None else r[f"{key}_repeats"][i]) for r in rows}
        n = min((len(r.get(f"{key}_repeats") or []) for r in rows), default=0)
        if not n:
            return time_ratios(keyed(None), batch_sizes, train_batch)
        per = [time_ratios(keyed(i), batch_sizes, train_batch) for i in range(n)]
        return ({k: statistics.median(p[0][k] for p in per) for k in per[0][0]},
                {k: statistics.median(p[1][k] for p in per) for k in per[0][1]})

    ratios, limits = times("time_s")
    for b in batch_sizes:
        ratios[f"prt/eft decode memory b{b}"] = (row("decode", "prt", b)["peak_mem_mb"]
                                                 / row("decode", "eft", b)["peak_mem_mb"])
    ft_mem = row("train", "ft", train_batch)["peak_mem_mb"]
    ratios["prt/ft train memory"] = row("train", "prt", train_batch)["peak_mem_mb"] / ft_mem  # frozen base held
    # the cached pass holds no base, only the pass of the data (here: one batch's; a training run
    # records the whole pass's size in the reward's manifest)
    ratios["prt/ft train memory, base pass cached"] = row("train", "prt_cached", train_batch)["peak_mem_mb"] / ft_mem
    ratios_cpu, limits_cpu = times("cpu_s")
    cuda = device.startswith("cuda")  # host CPU seconds mean nothing on a GPU
    return {"ratios": ratios, "limits": limits, "ratios_cpu_time": None if cuda else ratios_cpu,
            "limits_cpu_time": None if cuda else limits_cpu}


def time_ratios(t: dict[tuple[str, str, int], float], batch_sizes, train_batch: int
                ) -> tuple[dict[str, float], dict[str, float]]:
    """(measured ratios, their physical limits) from one clock's times, keyed (phase, method, batch)."""
    ratios, limits = {}, {}
    for b in batch_sizes:
        base, reward, prt_, eft = (t[("decode", m, b)] for m in ("base", "reward", "prt", "eft"))
        ratios[f"prt/ft decode time b{b}"], limits[f"prt/ft decode time b{b}"] = prt_ / base, (base + reward) / base
        ratios[f"prt/(base+reward) decode time b{b}"], limits[f"prt/(base+reward) decode time b{b}"] = (
            prt_ / (base + reward), 1.0)
        ratios[f"eft/prt decode time b{b}"], limits[f"eft/prt decode time b{b}"] = (
            eft / prt_, (base + 2 * reward) / (base + reward))
        ratios[f"eft/(base+2 reward) decode time b{b}"], limits[f"eft/(base+2 reward) decode time b{b}"] = (
            eft / (base + 2 * reward), 1.0)
    ft, prt_, cached, forward = (t[("train", m, train_batch)] for m in ("ft", "prt", "prt_cached", "forward"))
    ratios["prt/ft train time"], limits["prt/ft train time"] = cached / ft, 1.0
    ratios["prt/ft train time, base recomputed"], limits["prt/ft train time, base recomputed"] = (
        prt_ / ft, (ft + forward) / ft)
    return ratios, limits


def _isolated_many(fn_name: str, args: list[dict[str, Any]], progress: bool, workers: int = 2) -> list[Any]:
    """``fn_name(job)`` for every job, each in a fresh process forked from the server, ``workers`` at a time."""
    from concurrent.futures import ProcessPoolExecutor

    from rich.progress import track

    with ProcessPoolExecutor(max_workers=workers, mp_context=_context(args), max_tasks_per_child=1) as pool:
        futures = [pool.submit(globals()[fn_name], arg) for arg in args]
        try:
            return [f.result() for f in track(futures, description="peak memory (one process each)",
                                              disable=not progress)]
        except Exception as e:
            raise RuntimeError(f"profiling failed in {fn_name}: {type(e).__name__}: {e}") from e


def print_profile(record: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"LM cost profile ({record['device']}; memory: {record['memory_measure']})")
    for col in ("phase", "method", "batch", "time", "CPU time", "peak memory (MB)"):
        table.add_column(col, justify="left" if col in ("phase", "method") else "right")
    for r in record["rows"]:
        unit = "ms/token" if r["phase"] == "decode" else "ms/step"
        table.add_row(r["phase"], r["method"], str(r["batch"]), f"{1000 * r['time_s']:.2f} {unit}",
                      f"{1000 * r['cpu_s']:.2f} {unit}", f"{r['peak_mem_mb']:.1f}")
    console.print(table)
    ratios = Table(title="ratios, measured and their physical limit (from the single models' times)")
    for col in ("ratio", "wall time / memory", "limit", "CPU time", "limit (CPU)"):
        ratios.add_column(col, justify="left" if col == "ratio" else "right")
    fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
    for k, v in record["ratios"].items():
        ratios.add_row(k, fmt(v), fmt(record["limits"].get(k)), fmt((record.get("ratios_cpu_time") or {}).get(k)),
                       fmt((record.get("limits_cpu_time") or {}).get(k)))
    console.print(ratios)
