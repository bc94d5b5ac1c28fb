"""Loading language models and tokenizers from a hub id or a local folder.

A folder holding ``adapter_config.json`` is a peft LoRA adapter (``--lora`` training writes
one): its base is loaded, the adapter applied and merged, so an adapter folder can stand
wherever a full checkpoint can.  ``trust_remote_code`` stays off unless asked for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(spec: str | Path) -> bool:
    return (Path(spec) / ADAPTER_CONFIG).is_file()


def adapter_base(spec: str | Path) -> str:
    """The base model an adapter folder was trained on (as peft recorded it)."""
    with open(Path(spec) / ADAPTER_CONFIG, encoding="utf-8") as f:
        base = json.load(f).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{spec}/{ADAPTER_CONFIG} names no base_model_name_or_path")
    return base


def resolve_dtype(dtype: Any):
    import torch

    if dtype in (None, "auto"):
        return None if dtype is None else "auto"
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(names)} or auto")
    return names[dtype]


def _local(spec: str | Path) -> bool:
    """A local folder, or a spec that can only mean one (absolute, ./, ../, ~, or more than
    one '/'): a missing one is named as such, not reported as a hub id that failed."""
    s = str(spec)
    if Path(s).expanduser().is_dir():
        return True
    if s.startswith(("/", "./", "../", "~")) or s.count("/") > 1 or Path(s).exists():
        raise FileNotFoundError(f"no model folder at {s}" + (" (it is a file)" if Path(s).is_file() else ""))
    return False


# Text whose tokens show a tokenizer's whole pipeline: words, numbers, spaces, punctuation, lines.
PROBE_TEXT = "Question: Nora has 24 marbles, then 1337 more.\n  Answer: 3.5 + 12 = 15.5\n#### 42 ünï 東京!"
GENERIC_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(spec: str | Path, trust_remote_code: bool = False, revision: str | None = None):
    """The tokenizer of a checkpoint (a hub id at ``revision``), or of an adapter folder's base
    when it saved none -- as the folder saved it (``saved_tokenizer``)."""
    from transformers import AutoTokenizer

    spec = str(spec)
    if is_adapter_dir(spec) and not (Path(spec) / "tokenizer_config.json").is_file():
        spec = adapter_base(spec)
    tok = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code,
                                        **({"revision": revision} if revision else {}))
    return saved_tokenizer(spec, tok) or tok


def saved_tokenizer(spec: str | Path, tok: Any):
    """The folder's tokenizer exactly as its ``tokenizer.json`` has it, when the class
    AutoTokenizer chose for the model type tokenizes otherwise; else None.  transformers maps
    every ``qwen2`` checkpoint to Qwen2Tokenizer, which rebuilds Qwen2's own pre-tokenizer (one
    token per digit) over whatever vocabulary the folder saved: a Qwen2 model trained with
    another tokenizer of the same vocabulary would read every number in tokens it never saw."""
    path = Path(spec)
    if type(tok).__name__ in GENERIC_CLASSES or not (path / "tokenizer.json").is_file():
        return None
    from transformers import PreTrainedTokenizerFast

    saved = PreTrainedTokenizerFast.from_pretrained(path)
    if saved(PROBE_TEXT)["input_ids"] == tok(PROBE_TEXT)["input_ids"]:
        return None
    import logging

    logging.getLogger("prt_bench").warning(
        "%s: %s tokenizes otherwise than the folder's tokenizer.json; using the tokenizer as saved", path,
        type(tok).__name__)
    return saved


def saved_tokenizer_dir(spec: str | Path, out: str | Path) -> str | None:
    """For loaders that take a folder (lm-eval's ``hf`` model, ``tokenizer=``): ``out`` holding
    the tokenizer as ``spec`` saved it, where AutoTokenizer on ``spec`` would load another
    (``saved_tokenizer``); else None.  ``out`` has no model config, so AutoTokenizer keeps it."""
    from transformers import AutoTokenizer

    if not (Path(spec) / "tokenizer.json").is_file():
        return None
    saved = saved_tokenizer(spec, AutoTokenizer.from_pretrained(str(spec)))
    if saved is None:
        return None
    saved.save_pretrained(out)
    return str(out)


def load_causal_lm(spec: str | Path, *, dtype: Any = None, device: str | None = None,
                   trust_remote_code: bool = False, revision: str | None = None, device_map: Any = None):
    """A causal LM in eval mode (a hub id at ``revision``); adapter folders come back merged
    into their base.  ``device_map`` (e.g. ``auto``): spread over the visible devices by
    accelerate, instead of moved whole to ``device``."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if revision:
        kwargs["revision"] = revision
    torch_dtype = resolve_dtype(dtype)
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    if device_map is not None:
        kwargs["device_map"] = device_map

    def load(path: str):
        # never unpickle: a local folder must hold safetensors (pytorch_model.bin is refused)
        return AutoModelForCausalLM.from_pretrained(path, **kwargs, **({"use_safetensors": True} if _local(path) else {}))

    if _local(spec) and is_adapter_dir(spec):
        from peft import PeftModel

        model = PeftModel.from_pretrained(load(adapter_base(spec)), str(spec)).merge_and_unload()
    else:
        model = load(str(spec))
    if device and device_map is None:
        model.to(device)
    return model.eval()


def model_identity(spec: str | Path, model: Any = None, revision: str | None = None) -> dict[str, Any]:
    """What names a model reproducibly: a hub id and the commit its files came from (a hub
    snapshot folder, or a model loaded by id at ``revision``), else a local folder's content hash."""
    from prt_bench.hub import identity

    found = identity(spec)
    if "dir_hash" in found:
        found["path"] = str(Path(spec).resolve())
    elif found.get("sha") is None:
        found["sha"] = getattr(getattr(model, "config", None), "_commit_hash", None)
        if found["sha"] is None:  # the snapshot folder its config came from is named by the commit
            from transformers.utils.hub import cached_file

            config = cached_file(str(spec), "config.json", revision=revision)
            found["sha"] = Path(config).parent.name if config else None
    return found
