"""Foundation models for vision: any open_clip model, real or mini, loaded the same way.

A *base spec* is one of
  - ``MODEL:TAG``            a named open_clip architecture with a pretrained tag
                             (``ViT-B-16:laion400m_e32``, ``RN50:openai``); ``MODEL`` alone
                             builds random weights (for timing only);
  - ``MODEL:FILE.safetensors`` a named architecture with weights from a local file;
  - ``DIR``                  a local folder in open_clip's own hub layout
                             (``open_clip_config.json`` = {"model_cfg", "preprocess_cfg"} and
                             ``open_clip_model.safetensors``) -- how prt-bench saves every
                             model it makes (mini bases, FT models, PRT rewards);
  - ``hf-hub:ORG/REPO``      open_clip's hub schema, passed through.

Nothing here unpickles: local weights must be safetensors.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prt_bench.io import atomic_write_json, read_json, read_manifest, write_manifest

CONFIG_DIR = Path(__file__).parent / "model_configs"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"


@dataclass
class Base:
    """A loaded open_clip model with what is needed to rebuild or save it."""

    model: Any  # open_clip CLIP / CustomTextCLIP
    tokenizer: Any
    model_cfg: dict
    preprocess_cfg: dict
    spec: str
    manifest: dict | None = field(default=None)

    @property
    def image_size(self) -> int:
        size = self.preprocess_cfg.get("size", 224)
        return int(size[0] if isinstance(size, (tuple, list)) else size)


def register_configs() -> None:
    """Make prt-bench's small architectures (``model_configs/*.json``) known to open_clip by name."""
    import open_clip

    if "prt-tiny-vit" not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)


def _local_dir(spec: str) -> Path | None:
    p = Path(spec).expanduser()
    return p if p.is_dir() else None


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``MODEL[:TAG]`` into (model, tag); a tag that is a path keeps its colons (Windows drives aside)."""
    if spec.startswith(("hf-hub:", "local-dir:")):
        return spec, None
    model, sep, tag = spec.partition(":")
    return model, (tag or None) if sep else None


def check_spec(spec: str) -> None:
    """Raise ValueError unless ``spec`` names something open_clip knows, without loading weights.

    Used by suites to validate the paper's configs where no hub is reachable.
    """
    import open_clip

    register_configs()
    if _local_dir(spec):
        if not (Path(spec) / CONFIG_FILE).is_file():
            raise ValueError(f"{spec}: a base folder needs {CONFIG_FILE} (open_clip's hub layout)")
        return
    if spec.startswith(("hf-hub:", "local-dir:")):
        return
    model, tag = parse_spec(spec)
    if model not in open_clip.list_models():
        raise ValueError(f"unknown open_clip architecture {model!r} in base spec {spec!r}")
    if tag and not tag.endswith(".safetensors") and not open_clip.get_pretrained_cfg(model, tag):
        known = open_clip.list_pretrained_tags_by_model(model)
        raise ValueError(f"unknown pretrained tag {tag!r} for {model} (open_clip knows {known})")


def load_base(spec: str | os.PathLike, device: str = "cpu") -> Base:
    """Load a base (or any prt-bench vision checkpoint) from a spec; see the module docstring."""
    import open_clip

    register_configs()
    spec = str(spec)
    local = _local_dir(spec)
    if local is not None or spec.startswith("local-dir:"):
        folder = local or Path(spec[len("local-dir:"):])
        config_path = folder / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"{folder} is not an open_clip model folder: {CONFIG_FILE} is missing")
        if not (folder / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(f"{folder} has no {WEIGHTS_FILE} (only safetensors weights are loaded)")
        config = read_json(config_path)
        model = open_clip.create_model(f"local-dir:{folder}", device=device)
        return Base(model, open_clip.get_tokenizer(f"local-dir:{folder}"), config["model_cfg"],
                    dict(model.visual.preprocess_cfg), str(folder), read_manifest(folder))

    if spec.startswith("hf-hub:"):
        config = open_clip.factory._get_hf_config(spec[len("hf-hub:"):])
        model = open_clip.create_model(spec, device=device)
        return Base(model, open_clip.get_tokenizer(spec), config["model_cfg"], dict(model.visual.preprocess_cfg), spec)

    name, tag = parse_spec(spec)
    if name not in open_clip.list_models():
        if Path(spec).is_file():
            raise ValueError(f"{spec}: a weights file needs its architecture, as MODEL:{spec}")
        raise ValueError(f"unknown base {spec!r}: not a folder, and {name!r} is no open_clip architecture")
    if tag and Path(tag).expanduser().exists():
        if not tag.endswith(".safetensors"):
            raise ValueError(f"{tag}: only .safetensors weights are loaded (no pickles)")
    elif tag:
        check_spec(spec)
    try:
        model = open_clip.create_model(name, pretrained=tag, device=device)
    except RuntimeError as e:
        raise RuntimeError(f"could not load base {spec!r} ({e}); without hub access use a local folder") from e
    return Base(model, open_clip.get_tokenizer(name), open_clip.get_model_config(name),
                dict(model.visual.preprocess_cfg), spec)


def save_base(model: Any, out_dir: str | os.PathLike, model_cfg: dict, preprocess_cfg: dict, **manifest: Any) -> Path:
    """Save ``model`` in open_clip's hub layout, loadable by ``load_base(out_dir)`` and by
    ``open_clip.create_model("local-dir:" + out_dir)``; ``manifest`` fields go to prt_manifest.json."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    preprocess = {k: list(v) if isinstance(v, tuple) else v for k, v in preprocess_cfg.items()}
    atomic_write_json(out / CONFIG_FILE, {"model_cfg": copy.deepcopy(model_cfg), "preprocess_cfg": preprocess})
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    tmp = out / f".{WEIGHTS_FILE}.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out / WEIGHTS_FILE)
    write_manifest(out, **manifest)
    return out


def new_base(config_name: str, seed: int = 0, device: str = "cpu") -> Base:
    """A randomly initialised model of a named architecture (the mini world pretrains these)."""
    import open_clip
    import torch

    register_configs()
    torch.manual_seed(seed)
    logging.disable(logging.WARNING)  # open_clip warns that no pretrained weights were loaded: intended here
    try:
        model = open_clip.create_model(config_name, device=device)
    finally:
        logging.disable(logging.NOTSET)
    return Base(model, open_clip.get_tokenizer(config_name), open_clip.get_model_config(config_name),
                dict(model.visual.preprocess_cfg), config_name)
