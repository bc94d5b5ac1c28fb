"""Language models: transformers checkpoints trained by ``prt_bench.lm.train`` and evaluated
through lm-eval with the ``hf``, ``prt`` and ``eft`` models; tasks are lm-eval task files
under ``tasks/``; PRT and EFT need one tokenizer shared by source and target."""

from __future__ import annotations

import os

import re
from pathlib import Path
from typing import Any

from prt_bench.io import REPO_ROOT, atomic_write_text
from prt_bench.lm import samples as lm_samples
from prt_bench.suite.modalities import Modality, cache_dir, register, repo_path

TASKS_DIR = REPO_ROOT / "tasks"
TRAIN_DATA_KINDS = ("path", "mini", "shared", "hf_dataset", "gsm8k")
HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@register
class LanguageModels(Modality):
    name = "lm"
    base_kinds = ("hf", "path", "mini", "tiny", "gguf")
    base_extra = {"hf": {"revision"}, "mini": {"variant"}}
    hub_kinds = ("hf", "hf_dataset")
    task_keys = {"lm_eval_task", "primary_metric", "derived", "limit", "num_fewshot", "batch_size", "max_gen_toks",
                 "apply_chat_template", "train_data"}
    task_required = "lm_eval_task"
    eval_keys = {"batch_size", "limit", "dtype", "max_gen_toks"}
    methods = ("zeroshot", "ft_source", "ft_target", "prt", "eft", "reward_only")
    merges = True  # a section may hold `merges:` (reward arithmetic across its tasks)
    eft_strength = True  # EFT's implicit reward can be scaled (the λ sweep's EFT cells)
    default_primary = "exact_match,strict-match"
    # 32 tokens x 5 repeats: with 8 x 3 the decode ratios of these ~1M-parameter bases moved by
    # +-0.15 between runs (per-token times are a few ms, most of it Python)
    profile_settings = {"batch_sizes": [1, 8], "prompt_len": 16, "new_tokens": 32, "train_batch": 4,
                        "train_seq_len": 64, "repeats": 5}

    loggers = ("lm_eval", "lm-eval", "transformers", "datasets")

    def quiet(self) -> None:
        super().quiet()
        try:
            import transformers

            transformers.utils.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
        except ImportError:
            pass
        try:
            import datasets

            datasets.utils.logging.set_verbosity_error()
            datasets.utils.logging.disable_progress_bar()
        except ImportError:
            pass

    @property
    def train_keys(self) -> set[str]:
        from prt_bench.lm.train import LMTrainConfig

        return LMTrainConfig.keys() | {"data"}

    # --- the suite file
    def check_base(self, kind: str, value: Any, where: str) -> None:
        if kind == "hf" and not (isinstance(value, str) and HF_ID.match(value)):
            raise ValueError(f"unknown model {value!r}: a hub id looks like 'org/name'")
        if kind == "gguf" and not (isinstance(value, str) and (value.endswith(".gguf") and value.count(":") <= 1)):
            raise ValueError(f"a gguf base is a .gguf path or 'PACKAGE:FILE.gguf' inside an installed package, "
                             f"got {value!r}")
        if kind == "tiny":
            from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

            family = value.get("family", "llama")
            if family not in CONFIG_MAPPING_NAMES:
                raise ValueError(f"unknown tiny family {family!r} (a transformers model type: llama, qwen2, "
                                 "mistral, ...)")

    def check_section(self, train: dict[str, Any], tasks: dict[str, dict[str, Any]], where: str) -> None:
        if "data" not in train and not all("train_data" in t or "probe_of" in t for t in tasks.values()):
            raise ValueError(f"{where}.train: missing key 'data' (the instruction data FT and PRT train on)")
        for name, task in tasks.items():
            derived = task.get("derived")
            if derived is None:
                continue
            for metric, parts in (derived.items() if isinstance(derived, dict) else [(None, derived)]):
                if not (isinstance(metric, str) and isinstance(parts, list) and parts
                        and all(isinstance(p, str) and p.count(",") == 1 for p in parts)):
                    raise ValueError(f"{where}.tasks.{name}.derived: takes {{NAME: [\"metric,filter\", ...]}} -- quote "
                                     f"each \"metric,filter\" (unquoted, YAML splits it at the comma); got {derived!r}")
        for label, data in self._data_specs(train, tasks):
            if data is not None:
                if not isinstance(data, dict):
                    raise ValueError(f"{where}.{label}: expected a mapping, got {type(data).__name__}: {data!r}")
                kinds = [k for k in TRAIN_DATA_KINDS if k in data]
                extra = set(data) - set(kinds) - ({"revision"} if kinds == ["hf_dataset"] else set())
                if len(kinds) != 1 or extra:
                    raise ValueError(f"{where}.{label}: training data is exactly one of "
                                     f"{', '.join(TRAIN_DATA_KINDS)} (hf_dataset with an optional revision); "
                                     f"got {data!r}")
                if kinds == ["gsm8k"] and not (isinstance(data["gsm8k"], dict) and set(data["gsm8k"]) == {"n", "seed"}
                                               and all(isinstance(v, int) for v in data["gsm8k"].values())
                                               and data["gsm8k"]["n"] >= 1):
                    raise ValueError(f"{where}.{label}.gsm8k: takes {{n: PROBLEMS, seed: SEED}} (integers, n >= 1), "
                                     f"got {data['gsm8k']!r}")

    @staticmethod
    def _data_specs(train: dict[str, Any], tasks: dict[str, dict[str, Any]]) -> list[tuple[str, Any]]:
        return [("train.data", train.get("data"))] + [(f"tasks.{n}.train_data", t.get("train_data"))
                                                       for n, t in tasks.items()]

    # --- worlds and models the suite builds itself
    mini_world = ("prt_bench.mini.lm", "build_lm_world")

    def build_tiny(self, options: dict[str, Any], out: Path) -> None:
        from prt_bench.lm.tiny import build_tiny_lm, byte_level_tokenizer

        opts = dict(options)
        family = opts.pop("family", "llama")
        seed = opts.pop("seed", 0)
        build_tiny_lm(out, family, byte_level_tokenizer(), seed=seed, **opts)

    def resolve_base(self, spec: dict[str, Any], cache: Path | None) -> str | None:
        if "gguf" in spec:
            from prt_bench.lm.gguf import convert_gguf

            return str(convert_gguf(spec["gguf"], cache_dir(cache)))
        if "hf" in spec:  # the snapshot of the commit `revision` names: every role and load reads it
            from prt_bench.hub import pin

            return str(pin(spec["hf"], spec.get("revision"))[0])
        return None

    # --- what cells train on
    def train_data(self, section, task: str) -> tuple[str, Any]:
        data = section.tasks[task].get("train_data", section.train.get("data"))
        (kind, value), = ((k, v) for k, v in data.items() if k != "revision")
        if kind == "gsm8k":
            return f"gsm8k-n{value['n']}-seed{value['seed']}", data
        name = str(value).rstrip("/").split("/")[-1].removesuffix(".jsonl") if kind != "mini" else str(value)
        return name, data

    def resolve_data(self, data: Any, world: dict[str, str] | None, cache: Path | None) -> str:
        """A training-data spec -> a local prompt/response JSONL; a list of specs (multi-task FT)
        -> their rows together, in the list's order (the trainer shuffles), cached by content."""
        if isinstance(data, list):
            import hashlib

            parts = [Path(self.resolve_data(d, world, cache)).read_bytes() for d in data]
            blob = b"".join(p if p.endswith(b"\n") else p + b"\n" for p in parts)
            out = cache_dir(cache) / "data" / f"mixture-{hashlib.sha256(blob).hexdigest()[:16]}.jsonl"
            if not out.is_file():
                from prt_bench.io import atomic_write_bytes

                atomic_write_bytes(out, blob)
            return str(out)
        (kind, value), = ((k, v) for k, v in data.items() if k != "revision")
        if kind == "path":
            return str(repo_path(value))
        if kind == "shared":
            from prt_bench.data import require_data_file

            return str(require_data_file(value))
        if kind == "gsm8k":  # n seeded GSM8K training problems in gsm8k_local_zeroshot's format
            from prt_bench.real.tasks import write_gsm8k_pairs

            out = cache_dir(cache) / "data" / f"gsm8k-train-n{value['n']}-seed{value['seed']}.jsonl"
            return str(out if out.is_file() else write_gsm8k_pairs(out, value["n"], value["seed"]))
        if kind == "mini":
            key = f"data:{value}"
            if world is None or key not in world:
                raise KeyError(f"the mini lm world provides no training data {value!r}")
            return world[key]
        return str(chat_dataset_jsonl(value, cache, data.get("revision")))

    def job_env(self, world: dict[str, str] | None, cache: Path | None) -> dict[str, str]:
        from prt_bench.lm.base_pass import CACHE_ENV

        # PRT cells on one base and data (an alpha sweep, seeds, reruns) share the base's pass
        env = {CACHE_ENV: str(cache_dir(cache) / "base-pass")}
        if world:
            from prt_bench.mini.lm.tasks import ENV_VAR

            env[ENV_VAR] = world["data_dir"]  # where the mini tasks' lm-eval files read their data
        return env

    # --- checks that need files
    def check_files(self, suite, section, resolved: dict[str, str] | None, world: dict[str, str] | None,
                    cache: Path | None = None) -> None:
        where = f"{suite.path}: lm"
        self._check_tokenizers(section, resolved, cache, where)
        known = lm_task_names(TASKS_DIR)
        for name, task in section.tasks.items():
            if task["lm_eval_task"] not in known:
                raise ValueError(f"{where}.tasks.{name}: unknown lm-eval task {task['lm_eval_task']!r} "
                                 f"(tasks in {TASKS_DIR}: {', '.join(sorted(known))})")
        for label, data in self._data_specs(section.train, section.tasks):
            if data is None or "hf_dataset" in data or ("mini" in data and (resolved is None or world is None)):
                continue
            try:
                path = self.resolve_data(data, world, None)
            except (KeyError, FileNotFoundError) as e:
                raise ValueError(f"{where}.{label}: missing data: {e}") from None
            if not Path(path).is_file():
                raise ValueError(f"{where}.{label}: missing data: {path} does not exist")

    @staticmethod
    def _check_tokenizers(section, resolved: dict[str, str] | None, cache: Path | None, where: str) -> None:
        """Every transfer's source and target share one tokenizer.  Before the bases are built
        (``resolved`` None) only the tokenizers that need no weights are compared: a GGUF file's,
        from its metadata, so a pair of GGUF bases that cannot be combined is refused before any
        weight is read or converted; after, every pair, from the built bases."""
        from prt_bench.lm.load import load_tokenizer
        from prt_bench.lm.vocab import tokenizer_difference

        tokenizers: dict[str, Any] = {}

        def describe(name: str) -> str:
            spec = section.bases[name]
            return f"{name} ({spec['gguf']})" if "gguf" in spec else name

        def tok(name: str):
            if name not in tokenizers:
                spec = section.bases[name]
                try:
                    if resolved is not None:
                        tokenizers[name] = load_tokenizer(resolved[name])
                    elif "gguf" in spec:
                        from prt_bench.lm.gguf import gguf_tokenizer

                        tokenizers[name] = gguf_tokenizer(spec["gguf"], cache_dir(cache))
                    else:
                        tokenizers[name] = None
                except (ImportError, OSError, ValueError) as e:
                    shown = resolved[name] if resolved is not None else spec
                    raise ValueError(f"{where}: cannot load the tokenizer of {name} ({shown}): {e}") from e
            return tokenizers[name]

        for t in section.transfers:
            if t.source == t.target:
                continue
            source, target = tok(t.source), tok(t.target)
            if source is None or target is None:
                continue
            diff = tokenizer_difference(source, target)
            if diff:
                raise ValueError(f"{where}.transfers: source {describe(t.source)} and target {describe(t.target)} "
                                 f"have different tokenizers: {diff}; PRT and EFT combine per-token "
                                 "log-probabilities, so they need one shared tokenizer")

    # --- the work of a cell
    def train(self, method: str, base: str, data: Any, out: Path, *, seed: int, alpha: float,
              options: dict[str, Any]) -> None:
        from prt_bench.lm.train import train_in_processes, train_lm
        from prt_bench.suite.execute import TRAIN_PROCESSES_ENV

        processes = int(os.environ.get(TRAIN_PROCESSES_ENV) or 1)
        if processes > 1:  # prt-bench run --train-processes N: torchrun, DDP or FSDP (the train: key strategy)
            train_in_processes(processes, method, base, data, out, alpha=alpha, seed=seed, options=options)
        else:
            train_lm(method, base, data, out, alpha=alpha, seed=seed, progress=False, **options)

    def evaluate(self, method: str, paths: dict[str, str], task: dict[str, Any], options: dict[str, Any], *,
                 lam: float, seed: int, merge: dict[str, Any] | None = None,
                 strength: float | None = None) -> dict[str, Any]:
        """Through lm-eval with the `hf`, `prt` or `eft` model, the task's derived metrics added.
        Merge cells (``merge``: the set's weights, one per task) combine the trained roles
        ``reward<i>`` / ``ft<i>`` of the tasks whose weight is not 0; an EFT cell of the λ sweep
        scales its implicit reward by ``strength``."""
        import tempfile

        if method == "merge_ta":  # the merged weights exist only for this evaluation
            from prt_bench.lm.merge import task_arithmetic

            roles = _indexed(paths, "ft")
            with tempfile.TemporaryDirectory(prefix="prt-bench-ta-") as tmp:
                merged = task_arithmetic(paths["target"], [paths[f"ft{i}"] for i in roles],
                                         [merge["weights"][i] for i in roles], tmp)
                return self.evaluate("zeroshot", {"model": str(merged)}, task, options, lam=lam, seed=seed)
        return self._evaluate(method, paths, task, options, lam=lam, seed=seed, merge=merge, strength=strength)

    def _evaluate(self, method: str, paths: dict[str, str], task: dict[str, Any], options: dict[str, Any], *,
                  lam: float, seed: int, merge: dict[str, Any] | None, strength: float | None) -> dict[str, Any]:
        import tempfile

        import lm_eval
        import torch
        from lm_eval.tasks import TaskManager

        from prt_bench.lm.load import is_adapter_dir, saved_tokenizer_dir

        if method in ("prt", "eft", "merge_prt", "merge_eft"):
            import prt_bench.lm.lm_eval_models  # noqa: F401  (registers `prt` and `eft`)
        dtype = options.get("dtype", "float32")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if method == "merge_prt":
            roles = _indexed(paths, "reward")
            model, args = ("prt", f"base={paths['target']},reward={';'.join(paths[f'reward{i}'] for i in roles)},"
                                  f"reward_weights={';'.join(repr(merge['weights'][i]) for i in roles)},lam={lam},"
                                  f"dtype={dtype},device={device}")
        elif method == "merge_eft":
            roles = _indexed(paths, "ft")
            model, args = ("eft", f"base={paths['target']},ft={';'.join(paths[f'ft{i}'] for i in roles)},"
                                  f"ft_weights={';'.join(repr(merge['weights'][i]) for i in roles)},"
                                  f"pt={paths['source']},dtype={dtype},device={device}")
        elif method in ("zeroshot", "ft_source", "ft_target", "merge_ft", "reward_only"):
            # reward only: the reward checkpoint is a causal LM whose logits are r, so softmax(r)
            checkpoint = paths["reward" if method == "reward_only" else "model"]
            pretrained, peft = checkpoint, None
            if method != "zeroshot" and is_adapter_dir(checkpoint):  # LoRA: hf's own peft= loading on its base
                pretrained, peft = paths["target"], checkpoint
            model, args = "hf", f"pretrained={pretrained}" + (f",peft={peft}" if peft else "") + \
                f",dtype={dtype},device={device}"
        elif method == "prt":
            model, args = ("prt", f"base={paths['target']},reward={paths['reward']},lam={lam},dtype={dtype},"
                                  f"device={device}")
        elif method == "eft":
            model, args = ("eft", f"base={paths['target']},ft={paths['ft']},pt={paths['source']},dtype={dtype},"
                                  f"device={device}")
            if strength is not None:  # log π_t + strength · (log π_ft − log π_pt)
                args += f",ft_weights={strength!r}"
        else:
            raise ValueError(f"no language evaluation for method {method!r}")
        gen_kwargs = f"max_gen_toks={task['max_gen_toks']}" if "max_gen_toks" in task else None
        with tempfile.TemporaryDirectory(prefix="prt-bench-tok-") as tmp:
            if model == "hf":  # lm-eval loads the tokenizer by AutoTokenizer: give it the one the model saved
                if (saved := saved_tokenizer_dir(pretrained, tmp)) is not None:
                    args += f",tokenizer={saved}"
            out = lm_eval.simple_evaluate(
                model=model, model_args=args, tasks=[task["lm_eval_task"]],
                task_manager=TaskManager(include_path=str(TASKS_DIR), include_defaults=False),
                num_fewshot=task.get("num_fewshot"), batch_size=task.get("batch_size", options.get("batch_size", 1)),
                limit=task.get("limit", options.get("limit")), gen_kwargs=gen_kwargs,
                apply_chat_template=task.get("apply_chat_template", False),
                random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
                log_samples=True,
            )
        name = task["lm_eval_task"]
        results = out["results"]
        metrics = dict(results.get(name, next(iter(results.values()), {})))
        for derived, parts in (task.get("derived") or {}).items():
            metrics[derived] = sum(metrics[p] for p in parts) / len(parts)
        n = (out.get("n-samples") or {}).get(name) or {}
        if n.get("effective", n.get("original")) is not None:
            metrics["n_samples"] = n.get("effective", n.get("original"))
        return metrics, lm_samples.from_lm_eval(out, name, task.get("derived"))

    def rescore(self, header: dict[str, Any], rows: list[dict[str, Any]], task: dict[str, Any]) -> dict[str, Any]:
        return lm_samples.rescore(header, rows)

    def item_scores(self, header: dict[str, Any], rows: list[dict[str, Any]], metric: str) -> dict[str, float]:
        return lm_samples.item_scores(header, rows, metric)

    def sample_metrics(self, header: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
        return lm_samples.sample_metrics(rows)

    # --- cost
    def profile(self, bases: dict[str, Any] | None, device: str, settings: dict[str, Any]) -> dict[str, Any]:
        from prt_bench.lm.profile import profile_lm

        settings = {**settings, "batch_sizes": tuple(settings["batch_sizes"])}
        if bases is None:
            return profile_lm(device=device, progress=False, **settings)
        # decoding: each target alone, the reward (source architecture) alone, PRT, EFT (FT and
        # pre-trained model both of the source's architecture); training: the source
        source, (first, *more) = bases["source"], bases["targets"]
        return profile_lm(first, source, source, source, trainee=source, targets=tuple(more), device=device,
                          progress=False, **settings)  # memory: one process each


def _indexed(paths: dict[str, str], role: str) -> list[int]:
    """The i of the roles ``<role><i>`` a merge cell combines, in order."""
    return sorted(int(k[len(role):]) for k in paths if k.startswith(role) and k[len(role):].isdigit())


def lm_task_names(tasks_dir: Path) -> set[str]:
    """The lm-eval task names defined under ``tasks_dir`` (read without lm-eval)."""
    import yaml

    names = set()
    for p in tasks_dir.rglob("*.yaml"):
        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            doc = None  # lm-eval's !function tags: the name is still readable below
        if isinstance(doc, dict) and isinstance(doc.get("task"), str):
            names.add(doc["task"])
        else:
            for line in p.read_text(encoding="utf-8").splitlines():
                if line.startswith("task:"):
                    names.add(line.split(":", 1)[1].strip().strip("'\""))
    return names


def chat_dataset_jsonl(dataset_id: str, cache: Path | None, revision: str | None = None) -> Path:
    """A hub chat dataset (rows of `messages`, as Tulu v2) as prompt/response JSONL, cached by
    the dataset's id and the commit ``revision`` (default ``main``) resolves to, which the file
    name carries: a dataset updated on the hub is a new file, never the old one reused.

    One row per conversation: the prompt is every turn before the last assistant turn in the
    Tulu chat format (``<|user|>\\n...\\n<|assistant|>\\n``), the response that last turn.
    """
    import json

    from prt_bench.hub import pin
    from prt_bench.io import dir_hash

    if Path(dataset_id).is_dir():  # a local copy: keyed by its content
        folder, sha = Path(dataset_id), dir_hash(dataset_id)
    else:
        folder, sha = pin(dataset_id, revision, repo_type="dataset")
    name = dataset_id.rstrip("/").replace("/", "__").lstrip("_")[-80:]
    out = cache_dir(cache) / "data" / f"{name}@{sha[:12]}.jsonl"
    if out.is_file():
        return out
    from datasets import load_dataset

    lines = []
    for row in load_dataset(str(folder), split="train"):
        messages = row["messages"]
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None:
            continue
        prompt = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages[:last]) + "<|assistant|>\n"
        lines.append(json.dumps({"prompt": prompt, "response": messages[last]["content"]}))
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out
