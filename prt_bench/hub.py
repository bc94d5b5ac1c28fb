"""Hub models pinned to a commit: what a suite's ``{hf: ID, revision: REV}`` base loads.

A base named by hub id is resolved once, before any cell runs, to the local snapshot of the
commit ``revision`` names (a branch, tag or commit; ``main`` when none) -- the folder
``<hub cache>/models--ORG--NAME/snapshots/<commit sha>/``.  Every later load (model,
tokenizer, lm-eval) reads that folder, so one commit serves every role of every cell, and
the commit is recorded with each cell (``identity``).  Only safetensors and the small
config/tokenizer files are fetched: nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SKIP = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.msgpack", "*.h5", "*.ot", "*.onnx", "*.gguf"]


def pin(repo_id: str, revision: str | None = None, *, repo_type: str = "model") -> tuple[Path, str]:
    """(local snapshot folder, commit sha) of ``repo_id`` at ``revision``; uses the hub cache
    as it is when offline (``HF_HUB_OFFLINE=1``)."""
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(repo_id, revision=revision, repo_type=repo_type, ignore_patterns=SKIP))
    return folder, folder.name


def identity(path: str | Path) -> dict[str, Any]:
    """``{"id", "sha"}`` of a hub snapshot folder (or of a hub id: sha unknown here), else
    ``{"dir_hash"}``: the content hash of a local folder."""
    from prt_bench.io import dir_hash

    p = Path(path)
    if not p.is_dir():
        return {"id": str(path), "sha": None}
    real = p.resolve()
    if real.parent.name == "snapshots" and real.parent.parent.name.startswith(("models--", "datasets--")):
        kind, _, name = real.parent.parent.name.partition("--")
        return {"id": name.replace("--", "/"), "sha": real.name, "repo_type": kind.rstrip("s")}
    return {"dir_hash": dir_hash(p)}
