"""Where the data lives: an explicit option, then $PRT_BENCH_DATA, then ../shared/data beside
the repository, then None (callers fall back to the public hub source where they can)."""

from __future__ import annotations

import os
from pathlib import Path

from prt_bench.io import REPO_ROOT

ENV_VAR = "PRT_BENCH_DATA"


def data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_dir():
            raise FileNotFoundError(f"data dir {p} does not exist")
        return p
    if os.environ.get(ENV_VAR):
        p = Path(os.environ[ENV_VAR]).expanduser()
        if not p.is_dir():
            raise FileNotFoundError(f"${ENV_VAR}={p} does not exist")
        return p
    shared = REPO_ROOT.parent / "shared" / "data"
    if shared.is_dir():
        return shared
    return None


def require_data_file(relative: str, explicit: str | os.PathLike | None = None) -> Path:
    """A file under the data dir, or an error that says where it was looked for."""
    root = data_dir(explicit)
    if root is None:
        raise FileNotFoundError(
            f"no data dir for {relative}: pass --data-dir, set ${ENV_VAR}, or place the data at "
            f"{REPO_ROOT.parent / 'shared' / 'data'}"
        )
    p = root / relative
    if not p.exists():
        raise FileNotFoundError(f"{relative} not found in data dir {root}")
    return p
