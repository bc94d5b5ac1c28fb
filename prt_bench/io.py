"""Files prt-bench writes: atomic JSON and folders, content hashes, manifests, environment records,
and the schema ids of the records it writes."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST = "prt_manifest.json"
# Schema ids of the JSON records (a reader refuses a record of another schema).
CELL_SCHEMA = "prt-bench/cell/1"
PROFILE_SCHEMA = "prt-bench/profile/1"
SUBMISSION_SCHEMA = "prt-bench/submission/2"
COMPARISON_SCHEMA = "prt-bench/comparison/1"
MINI_LM_SCHEMA = "prt-bench/mini-lm/1"
VISION_EVAL_SCHEMA = "prt-bench/vision-eval/1"
REPO_ROOT = Path(__file__).resolve().parents[1]

# Names that become folder or file names (suites, leaderboard entries): a name, never a path.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")

_PACKAGES = ("prt-bench", "torch", "transformers", "peft", "lm_eval", "open_clip_torch", "safetensors")


def name_problem(name: Any, what: str = "name") -> str | None:
    """Why `name` cannot be a folder or file name under a root (None when it can)."""
    if not isinstance(name, str) or not name:
        return f"{what} is missing or not a string"
    if "/" in name or "\\" in name or ".." in name or name.startswith(("~", ".")) or os.path.isabs(name):
        return f"{what} {name!r} would reach outside its folder (a name, not a path, is required)"
    if not NAME_RE.match(name):
        return f"{what} {name!r} is not a plain name (1-80 letters, digits, '.', '_', '-')"
    return None


def finite_number(value: Any) -> bool:
    """A real number that is not NaN or infinite (bools are not numbers here)."""
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """``atomic_write_text`` for bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def staging_dir(out: str | os.PathLike) -> Path:
    """A fresh sibling folder to build ``out`` in, ``.NAME.PID.tmp`` (the runner removes those
    whose process is gone); see ``publish_dir``."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp


def publish_dir(tmp: str | os.PathLike, out: str | os.PathLike, *, replace: bool = True) -> Path:
    """Move a finished folder into place: ``out`` is complete or absent, never half written.

    ``replace``: an ``out`` already there (a stale or empty one) is removed first.  Otherwise an
    ``out`` that appeared meanwhile (a concurrent build of the same content) is kept and ``tmp``
    dropped."""
    tmp, out = Path(tmp), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if replace and out.exists():
        shutil.rmtree(out)
    try:
        os.replace(tmp, out)
    except OSError:
        if replace or not out.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of `base` with `override` laid over it, nested dicts merged key by key (config variants)."""
    import copy

    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def config_hash(config: Any, length: int = 16) -> str:
    """A stable hash of a JSON-able config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def file_hash(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dir_hash(path: str | os.PathLike, skip: tuple[str, ...] = (MANIFEST,)) -> str:
    """Content hash of every file below a folder (names and bytes), for local checkpoints."""
    root = Path(path)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in skip:
            h.update(str(p.relative_to(root)).encode())
            h.update(file_hash(p).encode())
    return h.hexdigest()


def package_versions(names: tuple[str, ...] = _PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit(root: Path = REPO_ROOT) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(device: str | None = None) -> dict[str, Any]:
    """What produced a result: package versions, git commit, host and device."""
    env: dict[str, Any] = {
        "packages": package_versions(),
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        env["threads"] = torch.get_num_threads()  # results are bitwise reproducible only at one count
        # the vector instructions torch's CPU kernels use: floats round alike only on the same
        env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        env["device"] = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        env["device"] = device or "cpu"
    return env


def write_manifest(out_dir: str | os.PathLike, **fields: Any) -> Path:
    """The small JSON next to every checkpoint that says what produced it."""
    record = {"producer": "prt-bench", **fields, "environment": environment()}
    return atomic_write_json(Path(out_dir) / MANIFEST, record)


def trained_lam(model_dir: str | os.PathLike) -> float | None:
    """The λ a PRT reward was trained with (eq. 6), from its manifest: the language recipe records
    it under ``hyperparameters``, the vision recipe under ``config``; None when not recorded."""
    manifest = read_manifest(model_dir) if Path(model_dir).is_dir() else None
    for section in ("hyperparameters", "config"):
        value = ((manifest or {}).get(section) or {}).get("lam")
        if finite_number(value) and value > 0:
            return float(value)
    return None


def read_manifest(model_dir: str | os.PathLike) -> dict[str, Any] | None:
    p = Path(model_dir) / MANIFEST
    return read_json(p) if p.is_file() else None
