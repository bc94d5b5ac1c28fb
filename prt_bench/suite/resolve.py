"""A suite's base specs -> what the recipes load: a hub id or tag, a local folder, or a model
the suite builds itself (the modality's mini world, a tiny random model), cached by content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prt_bench.io import config_hash, publish_dir, staging_dir
from prt_bench.suite import modalities
from prt_bench.suite.modalities import cache_dir, repo_path
from prt_bench.suite.schema import Suite, SuiteError


def resolve_base(modality: str, spec: dict[str, Any], cache: Path | None, world: dict[str, str] | None = None) -> str:
    own = modalities.get(modality).resolve_base(spec, cache)
    if own is not None:
        return own
    if "path" in spec:
        return str(repo_path(spec["path"]))
    if "tiny" in spec:
        return str(build_tiny(modality, spec["tiny"], cache))
    if "mini" in spec:
        if world is None or spec["mini"] not in world:
            raise KeyError(f"the mini {modality} world has no base {spec['mini']!r} (it has: {sorted(world or {})})")
        return world[spec["mini"]]
    raise ValueError(f"unknown base spec {spec!r}")


def build_tiny(modality: str, options: dict[str, Any], cache: Path | None) -> Path:
    """A randomly initialised tiny model, for smoke suites: cached under its options' hash."""
    out = cache_dir(cache) / "tiny" / modality / config_hash(options)
    if (out / ".complete").is_file():
        return out
    tmp = staging_dir(out)
    modalities.get(modality).build_tiny(options, tmp)
    (tmp / ".complete").write_text("")
    return publish_dir(tmp, out)


def build_world(suite: Suite, modality: str, cache: Path | None, progress: bool) -> dict[str, str]:
    """The mini world of a section, only the bases it names built (or found cached)."""
    section = suite.sections[modality]
    specs = [spec for spec in section.bases.values() if "mini" in spec]
    variants = {spec.get("variant", "default") for spec in specs}
    if len(variants) > 1:
        raise SuiteError(f"{suite.path}: {modality} bases from several mini world variants {sorted(variants)}")
    variant = variants.pop() if variants else "default"
    return modalities.get(modality).build_world(cache, variant, progress, [spec["mini"] for spec in specs])


def uses_hub(suite: Suite) -> bool:
    """Whether any base or training data of the suite may come from a model hub."""
    for name, section in suite.sections.items():
        kinds = modalities.get(name).hub_kinds
        specs = list(section.bases.values()) + [section.train.get("data") or {}]
        specs += [t.get("train_data") or {} for t in section.tasks.values()]
        if any(k in s for s in specs if isinstance(s, dict) for k in kinds):
            return True
    return False
