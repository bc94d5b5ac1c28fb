"""The frozen base's pass of PRT training, computed once and reused.

PRT's loss (eq. 6) needs the base's log-probabilities on the scored (response) positions of
every training example, and the base never changes while the reward trains.  ``BasePass``
hands them to each training batch (normalised once, ``prt.log_probs``, not at every step):

- **one example at a time.**  Each example's log-probabilities come from the example on its
  own (a batch of one, no padding), so they never depend on which examples share its training
  batch.  Looking them up therefore gives bitwise what computing them at the step gives, at a
  fixed thread count -- the cache is exact by construction, not approximately.
- **up front, within a budget.**  When the whole pass (scored positions × vocabulary × 4
  bytes) fits ``budget_mb`` it is computed once before training; otherwise each training batch
  computes its own examples' the same way (the fallback: same numbers, the base's cost paid
  at every step).
- **on disk, shared.**  With ``cache_dir`` the precomputed pass is kept in a safetensors file
  named by the hash of everything it depends on (the base's identity, the examples' token
  ids, the vocabulary, dtype, device, thread count and torch version) and read memory-mapped,
  so every PRT cell that trains on the same base and data -- an α sweep, seeds, reruns, the λ
  axis -- reads it instead of running the base.  A file lock lets one of several cells
  started together compute it while the others wait.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

IGNORE = -100
DEFAULT_BUDGET_MB = 2048.0
BUDGET_ENV = "PRT_BENCH_BASE_PASS_MB"     # overrides the default budget (0: always recompute)
CACHE_ENV = "PRT_BENCH_BASE_PASS_CACHE"   # a folder: the suite's cache of base passes
VERSION = 2  # 2: log-probabilities (prt.log_probs), not raw logits

Forward = Callable[[Any, Any], Any]  # (input_ids [1, L], positions kept [R]) -> logits [1, R, V]


def scored_positions(labels: Sequence[int]) -> tuple[int, int]:
    """``[start, stop)``: the positions whose logits predict a scored label (labels are one
    contiguous response span, as ``encode_pair`` writes them)."""
    scored = [t for t in range(len(labels) - 1) if labels[t + 1] != IGNORE]
    if not scored:
        return 0, 0
    if scored[-1] - scored[0] + 1 != len(scored):
        raise ValueError("the scored labels of an example must be one contiguous span")
    return scored[0], scored[-1] + 1


def default_budget_mb() -> float:
    value = os.environ.get(BUDGET_ENV)
    if value is None:
        return DEFAULT_BUDGET_MB
    try:
        budget = float(value)
    except ValueError:
        raise ValueError(f"{BUDGET_ENV}={value!r} is not a number of MB") from None
    if budget < 0:
        raise ValueError(f"{BUDGET_ENV} must be >= 0, got {budget}")
    return budget


def key(base_identity: dict[str, Any], examples: Sequence[tuple[list[int], list[int]]], vocab: int,
        dtype: str, device: str, forward_kind: str) -> str:
    """The hash naming a base pass: everything its numbers depend on."""
    import torch

    h = hashlib.sha256()
    h.update(json.dumps({"version": VERSION, "base": base_identity, "vocab": vocab, "dtype": dtype,
                         "device": device, "forward": forward_kind, "threads": torch.get_num_threads(),
                         "torch": torch.__version__}, sort_keys=True).encode())
    for ids, labels in examples:
        h.update(json.dumps([ids, labels]).encode())
    return h.hexdigest()[:20]


class BasePass:
    """The base's log-probabilities on the scored positions of training examples, for any batch of them.

    ``forward(input_ids, keep)`` runs the frozen base (no autograd) on one example and returns
    the logits of positions ``keep``.  ``cache_file``: where the precomputed pass is read from
    or written to (None: memory only).
    """

    def __init__(self, forward: Forward | None, examples: Sequence[tuple[list[int], list[int]]], vocab: int, *,
                 device: Any = "cpu", budget_mb: float | None = None, cache_file: str | Path | None = None,
                 progress: bool = False) -> None:
        self.forward, self.examples, self.vocab, self.device = forward, examples, vocab, device
        self.spans = [scored_positions(labels) for _, labels in examples]
        self.offsets = [0]  # example i's rows of the table: offsets[i]:offsets[i + 1]
        for a, b in self.spans:
            self.offsets.append(self.offsets[-1] + b - a)
        self.budget_mb = default_budget_mb() if budget_mb is None else budget_mb
        self.cache_file = Path(cache_file) if cache_file else None
        self.progress = progress
        # [Σ scored positions, vocab] float32 when precomputed: a tensor in memory, or rows read
        # from the memory-mapped cache file (the page cache holds them, not the process's heap)
        self.table = None
        self.source = "recomputed at every step"

    @property
    def size_mb(self) -> float:
        return self.offsets[-1] * self.vocab * 4 / 2**20

    @property
    def fits(self) -> bool:
        """Whether the whole pass is within the budget (computed once) or not (at every step)."""
        return self.size_mb <= self.budget_mb

    def prepare(self) -> "BasePass":
        """Read the pass from the cache file, or compute it (and write the file) when it fits."""
        offsets = self.offsets
        if not self.fits:
            return self
        if self.cache_file is None:
            self.table, self.source = self._compute_all(), "computed once, kept in memory"
        else:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            with _locked(self.cache_file.with_suffix(".lock")):
                self.table = _read(self.cache_file, offsets)
                if self.table is not None:
                    self.source = f"read from {self.cache_file}"
                else:
                    _write(self.cache_file, self._compute_all(), offsets)
                    self.table = _read(self.cache_file, offsets)
                    self.source = f"computed once, written to {self.cache_file}"
        self.forward = None  # the table answers every batch: let the base go
        return self

    def _one(self, i: int):
        """Example ``i``'s log-probabilities on its scored positions, [positions, vocab], float32 on CPU."""
        import torch

        from prt_bench.prt import log_probs

        ids, _ = self.examples[i]
        a, b = self.spans[i]
        if a == b:
            return torch.zeros((0, self.vocab))
        with torch.no_grad():
            x = torch.tensor([ids], device=self.device)
            logits = self.forward(x, torch.arange(a, b, device=self.device))
        return log_probs(logits[0, :, :self.vocab]).cpu()

    def _compute_all(self):
        import torch
        from tqdm.auto import tqdm

        rows = [self._one(i) for i in tqdm(range(len(self.examples)), desc="base pass", disable=not self.progress)]
        return torch.cat(rows) if rows else torch.zeros((0, self.vocab))

    def batch(self, indices: Sequence[int], lo: int, hi: int):
        """The base's log-probabilities (``prt.log_probs``) for a right-padded training batch of
        these examples, on its scored span ``[lo, hi)`` ([batch, hi - lo, vocab]; 0 where a row's
        label is not scored)."""
        import torch

        out = torch.zeros((len(indices), hi - lo, self.vocab))
        for row, i in enumerate(indices):
            a, b = self.spans[i]
            if a == b:
                continue
            values = self.table[self.offsets[i]:self.offsets[i + 1]] if self.table is not None else self._one(i)
            out[row, a - lo:b - lo] = values
        return out.to(self.device)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read(path: Path, offsets: list[int]):
    """The cached table, memory-mapped (rows are read as batches ask for them), or None when
    absent or not the shape these examples need (then it is recomputed)."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        f = safe_open(str(path), framework="pt")
        if "offsets" not in f.keys() or "logits" not in f.keys() or f.get_tensor("offsets").tolist() != offsets:
            return None
        table = f.get_slice("logits")
        if table.get_shape()[0] != offsets[-1]:
            return None
        return table
    except Exception:  # noqa: BLE001 - a damaged file is recomputed and replaced
        return None


def _write(path: Path, table, offsets: list[int]) -> None:
    import torch
    from safetensors.torch import save_file

    from prt_bench.io import _umask

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file({"logits": table.contiguous(), "offsets": torch.tensor(offsets, dtype=torch.int64)}, str(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)  # readers see the whole file or none
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
