"""The cost profile of a suite run: ``<results>/<suite>/profile/<modality>.json``, the files the
report's cost section reads (schema ``prt-bench/profile/1``, as ``prt-bench profile <modality>
--out`` writes them; each modality's ``profile`` measures it).

For every modality the run covers, one small profile (seconds on a CPU) of the suite's first
source and every transfer from it: FT and PRT train steps of the source (PRT trains the reward
there), and inference of FT, PRT (target + reward) and EFT (target + FT + source) on each of its
targets (a modality that profiles one target at a time takes the first) -- the suite's own bases
when the suite builds them (mini worlds, tiny models); otherwise (hub models, local paths, whose
size is unknown) the small models the profile commands build, which have the same structure.

Each file records the hash of what it measured (bases, with the mini world's hash, settings,
device); a rerun whose request hashes the same skips it, and a changed world or setting measures
again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from rich.markup import escape

from prt_bench.io import atomic_write_json, config_hash, read_json
from prt_bench.suite import modalities
from prt_bench.suite.plan import base_ref
from prt_bench.suite.schema import Suite

VERSION = 3  # 2: FT of the target, the single models and the physical limits; 3: every target, cached PRT
OWN_BASES = ("mini", "tiny")  # base specs the suite builds itself: cheap to profile, no hub


def requests(suite: Suite, names: set[str], device: str) -> dict[str, dict[str, Any]]:
    """modality -> what its profile measures (a JSON-able dict; its hash keys the file)."""
    out = {}
    for modality in sorted(names):
        section = suite.sections.get(modality)
        if section is None or not section.transfers:
            continue
        first = section.transfers[0].source
        source = base_ref(section, first)
        targets = [base_ref(section, t.target) for t in section.transfers if t.source == first]
        own = all(any(k in spec for k in OWN_BASES) for spec in (source, *targets))
        out[modality] = {"version": VERSION, "modality": modality, "device": device,
                         "settings": modalities.get(modality).profile_settings,  # seconds on a CPU
                         "source": source if own else None, "target": targets[0] if own else None,
                         "targets": targets[1:] if own else []}
    return out


def path(results_dir: Path, modality: str) -> Path:
    return Path(results_dir) / "profile" / f"{modality}.json"


def is_current(results_dir: Path, request: dict[str, Any]) -> bool:
    """Whether the profile file holds a measurement of exactly this request."""
    p = path(results_dir, request["modality"])
    if not p.is_file():
        return False
    try:
        record = read_json(p)
    except (OSError, ValueError):
        return False
    return (record.get("run") or {}).get("config_hash") == config_hash(request)


def measure(request: dict[str, Any], resolve: Callable[[str, str], str]) -> dict[str, Any]:
    """Run one profile; ``resolve(modality, base name)`` gives a base's local folder."""
    modality, settings, device = request["modality"], request["settings"], request["device"]
    names = ({"source": request["source"]["name"], "target": request["target"]["name"],
              **{f"target{i + 2}": t["name"] for i, t in enumerate(request.get("targets", []))}}
             if request["source"] else None)
    paths = {role: resolve(modality, name) for role, name in names.items()} if names else None
    bases = {"source": paths["source"], "targets": [p for role, p in paths.items() if role != "source"]} \
        if paths else None
    start = time.perf_counter()
    record = modalities.get(modality).profile(bases, device, settings)
    if names:
        _name_models(record, paths, names)
    record["run"] = {"config": request, "config_hash": config_hash(request), "bases": names,
                     "wall_s": round(time.perf_counter() - start, 3)}
    return record


def _name_models(record: dict[str, Any], paths: dict[str, str], names: dict[str, str]) -> None:
    """Suite base names instead of cache folders, where the report shows what was profiled."""
    by_path = {paths[role]: f"{names[role]} ({role})" for role in paths}
    rename = lambda v: by_path.get(v, v)  # noqa: E731
    for key in ("models", "config"):
        if isinstance(record.get(key), dict):
            record[key] = {k: rename(v) if isinstance(v, str) else v for k, v in record[key].items()}
    for row in record.get("rows", []) + record.get("extra_rows", []) + record.get("transfers", []):
        for k in ("model", "target"):
            if isinstance(row.get(k), str):
                row[k] = rename(row[k])


def write_profiles(results_dir: Path, todo: dict[str, dict[str, Any]], resolve: Callable[[str, str], str],
                   console) -> list[Path]:
    """Measure and write every requested profile; a failure is reported and leaves the others."""
    written = []
    for modality, request in todo.items():
        console.print(f"profile {modality}: FT vs PRT vs EFT cost"
                      + (f" ({request['source']['name']} -> {request['target']['name']})" if request["source"]
                         else " (small built models)"))
        try:
            record = measure(request, resolve)
        except Exception as e:  # noqa: BLE001 - the results stand without the profile
            console.print(f"[red]profile {modality} failed[/red]: {type(e).__name__}: {escape(str(e))}")
            continue
        out = path(results_dir, modality)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out, record)
        written.append(out)
    return written
