"""The thin layer between the runner and the recipes of each modality.

Four adapters do the work of a cell -- ``lm_train``, ``lm_eval``, ``vision_train``,
``vision_eval`` -- each a direct call into the modality's own API (``prt_bench.lm``,
``prt_bench.vision``, lm-eval).  Around them: turning a suite's base and data specs into
local paths or hub ids (``resolve_base``, ``resolve_data``; the mini world and tiny models are
built here, cached by content hash).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prt_bench.io import REPO_ROOT, config_hash

TASKS_DIR = REPO_ROOT / "tasks"


# ------------------------------------------------------------------------ bases and data

def _repo_path(p: str) -> Path:
    """Relative paths in suite files are relative to the repository root."""
    path = Path(p).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def mini_family(modality: str, variant: str = "default") -> tuple[str, list[str]]:
    """(world hash, base names) of a mini world, read from its family file without building it."""
    if modality == "vision":
        from prt_bench.mini import vision

        family = vision.load_family(variant)
        return vision.world_hash(family), list(family["bases"])
    from prt_bench.mini import lm

    family = lm.load_family(variant)
    return lm.world_hash(family), list(family["bases"])


def mini_world(modality: str, cache: Path | None, variant: str = "default", progress: bool = True,
               only: list[str] | None = None) -> dict[str, str]:
    """Build (or find cached) a mini world -- all its bases, or those named in `only`: base
    name -> folder (and, for language, "data:<task>" -> file)."""
    if modality == "vision":
        from prt_bench.mini.vision import build_vision_world

        root = cache / "mini" / "vision" if cache else None
        world = build_vision_world(cache_root=root, variant=variant, progress=progress, only=only)
    else:
        from prt_bench.mini.lm import build_lm_world

        root = cache / "mini" / "lm" if cache else None
        world = build_lm_world(cache_root=root, variant=variant, progress=progress, only=only)
    return {k: str(v) for k, v in world.items()}


def build_tiny(modality: str, options: dict[str, Any], cache: Path | None) -> Path:
    """A randomly initialised tiny model, for smoke suites: cached under its options' hash."""
    out = (cache or REPO_ROOT / ".cache") / "tiny" / modality / config_hash(options)
    if (out / ".complete").is_file():
        return out
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    if modality == "lm":
        from prt_bench.lm.tiny import build_tiny_lm, byte_level_tokenizer

        opts = dict(options)
        family = opts.pop("family", "llama")
        seed = opts.pop("seed", 0)
        build_tiny_lm(tmp, family, byte_level_tokenizer(), seed=seed, **opts)
    else:
        from prt_bench.vision.bases import new_base, save_base

        base = new_base(options["config"], seed=options.get("seed", 0))
        save_base(base.model, tmp, base.model_cfg, base.preprocess_cfg, kind="vision-base", tiny=options)
    (tmp / ".complete").write_text("")
    _replace_dir(tmp, out)
    return out


def resolve_base(modality: str, spec: dict[str, Any], cache: Path | None, mini: dict[str, str] | None = None) -> str:
    """A base spec from a suite -> what the recipes load (a local folder, hub id or MODEL:TAG)."""
    if "hf" in spec:
        return spec["hf"]
    if "open_clip" in spec:
        return spec["open_clip"]
    if "path" in spec:
        return str(_repo_path(spec["path"]))
    if "tiny" in spec:
        return str(build_tiny(modality, spec["tiny"], cache))
    if "mini" in spec:
        if mini is None or spec["mini"] not in mini:
            raise KeyError(f"the mini {modality} world has no base {spec['mini']!r} (it has: {sorted(mini or {})})")
        return mini[spec["mini"]]
    raise ValueError(f"unknown base spec {spec!r}")


def resolve_data(data: dict[str, Any], mini: dict[str, str] | None = None, cache: Path | None = None) -> str:
    """A training-data spec -> a local prompt/response JSONL."""
    (kind, value), = data.items()
    if kind == "path":
        return str(_repo_path(value))
    if kind == "shared":
        from prt_bench.data import require_data_file

        return str(require_data_file(value))
    if kind == "mini":
        key = f"data:{value}"
        if mini is None or key not in mini:
            raise KeyError(f"the mini lm world provides no training data {value!r}")
        return mini[key]
    return str(chat_dataset_jsonl(value, cache))


def chat_dataset_jsonl(dataset_id: str, cache: Path | None) -> Path:
    """A hub chat dataset (rows of `messages`, as Tulu v2) as prompt/response JSONL, cached.

    One row per conversation: the prompt is every turn before the last assistant turn in the
    Tulu chat format (``<|user|>\\n...\\n<|assistant|>\\n``), the response that last turn.
    """
    import json

    out = (cache or REPO_ROOT / ".cache") / "data" / (dataset_id.replace("/", "__") + ".jsonl")
    if out.is_file():
        return out
    from datasets import load_dataset

    from prt_bench.io import atomic_write_text

    lines = []
    for row in load_dataset(dataset_id, split="train"):
        messages = row["messages"]
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None:
            continue
        prompt = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages[:last]) + "<|assistant|>\n"
        lines.append(json.dumps({"prompt": prompt, "response": messages[last]["content"]}))
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move a finished folder into place; a stale one from an interrupted run is replaced."""
    import shutil

    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)


# ------------------------------------------------------------------------ the adapters

def lm_train(method: str, base: str, data: str, out: Path, *, seed: int, alpha: float, options: dict[str, Any]) -> None:
    from prt_bench.lm.train import train_lm

    train_lm(method, base, data, out, alpha=alpha, seed=seed, progress=False, **options)


def lm_eval(method: str, paths: dict[str, str], task: dict[str, Any], options: dict[str, Any], *, lam: float,
            seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate through lm-eval with the `hf`, `prt` or `eft` model; returns (results, samples info)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    if method in ("prt", "eft"):
        import prt_bench.lm.lm_eval_models  # noqa: F401  (registers `prt` and `eft`)
    import torch

    dtype = options.get("dtype", "float32")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if method in ("zeroshot", "ft_source", "ft_target"):
        model, args = "hf", f"pretrained={paths['model']},dtype={dtype},device={device}"
    elif method == "prt":
        model, args = "prt", f"base={paths['target']},reward={paths['reward']},lam={lam},dtype={dtype},device={device}"
    elif method == "eft":
        model, args = "eft", f"base={paths['target']},ft={paths['ft']},pt={paths['source']},dtype={dtype},device={device}"
    else:
        raise ValueError(f"no language evaluation for method {method!r}")
    gen_kwargs = f"max_gen_toks={task['max_gen_toks']}" if "max_gen_toks" in task else None
    out = lm_eval.simple_evaluate(
        model=model, model_args=args, tasks=[task["lm_eval_task"]],
        task_manager=TaskManager(include_path=str(TASKS_DIR), include_defaults=False),
        num_fewshot=task.get("num_fewshot"), batch_size=task.get("batch_size", options.get("batch_size", 1)),
        limit=task.get("limit", options.get("limit")), gen_kwargs=gen_kwargs,
        apply_chat_template=task.get("apply_chat_template", False),
        random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
        log_samples=False,
    )
    results = {k: v for k, v in out["results"].items()}
    n = {name: s.get("effective", s.get("original")) for name, s in (out.get("n-samples") or {}).items()}
    return results, n


def vision_train(method: str, base: str, data: dict[str, str], out: Path, *, seed: int, alpha: float,
                 options: dict[str, Any]) -> None:
    from prt_bench.vision.train import train_vision

    train_vision(method, base, data["dataset"], out, split=data.get("split", "train"), alpha=alpha, seed=seed,
                 progress=False, **options)


def vision_eval(method: str, paths: dict[str, str], dataset: str, split: str, options: dict[str, Any], *,
                lam: float) -> dict[str, Any]:
    from prt_bench.vision.eval import eval_vision

    kind = {"zeroshot": "zeroshot", "ft_source": "ft", "ft_target": "ft", "prt": "prt", "eft": "eft",
            "reward_only": "reward"}[method]
    kwargs: dict[str, Any] = dict(options)
    if kind == "prt" or kind == "reward":
        kwargs.update(reward=paths["reward"], lam=lam)
    if kind == "eft":
        kwargs.update(ft=paths["ft"], pt=paths["source"])
    target = paths["model"] if kind == "ft" else paths["target"]
    return eval_vision(kind, target, dataset, split=split, progress=False, **kwargs)
