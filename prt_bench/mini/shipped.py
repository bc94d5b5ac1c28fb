"""Parts of a mini world shipped with the repository: ``worlds/<world>/<config-hash>/<part>/``
beside a ``SHA256SUMS.json`` that holds every file's sha256 and what built them (variant,
thread count, torch).  A build copies a shipped part into its cache only after every one of its
files matched (a part that fails is built instead, with a warning); ``differences`` compares a
fresh rebuild with what was shipped, bit for bit.  Each world (language, vision) says which
parts it has and how it rebuilds them."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

from prt_bench.io import MANIFEST, atomic_write_json, file_hash, publish_dir, read_json, staging_dir

SUMS = "SHA256SUMS.json"
NOT_COMPARED = (MANIFEST,)  # what produced a part (machine, times): not the part itself


def part_files(folder: Path, part: str) -> dict[str, Path]:
    """``part/relative/path`` -> file, for every file below ``folder/part``."""
    return {p.relative_to(folder).as_posix(): p for p in sorted((folder / part).rglob("*")) if p.is_file()}


def read_sums(ship: Path) -> dict[str, Any]:
    return read_json(ship / SUMS)


def adopt(root: Path, parts: list[str], ship: Path, world: str) -> list[str]:
    """Copy the shipped ``parts`` from ``ship`` into ``root``, each after every one of its files
    matched its sha256; returns the parts copied."""
    if not parts or not (ship / SUMS).is_file():
        return []
    sums = read_sums(ship)["files"]
    adopted = []
    for part in parts:
        want = {rel: h for rel, h in sums.items() if rel.split("/")[0] == part}
        if not want:
            continue
        have = part_files(ship, part)
        bad = sorted(rel for rel, h in want.items() if rel not in have or file_hash(have[rel]) != h)
        bad += sorted(set(have) - set(want))
        if bad:
            warnings.warn(f"shipped {world} part {part}: {', '.join(bad[:3])} do not match {ship / SUMS}; "
                          "pretraining it instead", RuntimeWarning, stacklevel=3)
            continue
        tmp = staging_dir(root / part)
        shutil.copytree(ship / part, tmp)
        publish_dir(tmp, root / part)
        adopted.append(part)
    return adopted


def write(root: Path, parts: list[str], dest: Path, meta: dict[str, Any]) -> Path:
    """Ship ``parts`` of the build at ``root`` to ``dest`` with their sums and ``meta``."""
    import torch

    tmp = staging_dir(dest)
    tmp.mkdir(parents=True)
    for part in parts:
        shutil.copytree(root / part, tmp / part)
    files = {rel: file_hash(p) for part in parts for rel, p in part_files(tmp, part).items()}
    atomic_write_json(tmp / SUMS, {**meta, "torch": torch.__version__, "files": files})
    return publish_dir(tmp, dest)


def differences(ship: Path, rebuilt: Path) -> dict[str, list[str]]:
    """part -> the shipped files a rebuild at ``rebuilt`` does not reproduce byte for byte
    (manifests, which record the machine and times, are not compared)."""
    out: dict[str, list[str]] = {}
    for rel, h in read_sums(ship)["files"].items():
        part, name = rel.split("/")[0], rel.rsplit("/", 1)[-1]
        out.setdefault(part, [])
        if name not in NOT_COMPARED and (not (rebuilt / rel).is_file() or file_hash(rebuilt / rel) != h):
            out[part].append(rel)
    return out


def verify(ship: Path, world: str, rebuild: Callable[[str, int | None], Path], work=None) -> dict[str, list[str]]:
    """Rebuild what ``ship`` holds in a temporary folder (under ``work``) at the thread count it was
    built with -- ``rebuild(folder, threads)`` returns the rebuilt world's root -- and compare:
    part -> the files that differ."""
    if not (ship / SUMS).is_file():
        raise FileNotFoundError(f"no shipped {world} world at {ship}")
    threads = (read_sums(ship).get("threads") or [None])[0]
    with tempfile.TemporaryDirectory(prefix="prt-bench-mini-verify-", dir=work) as tmp:
        return differences(ship, rebuild(tmp, threads))
