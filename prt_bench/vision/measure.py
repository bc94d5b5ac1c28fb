"""Peak memory of one phase of work, on GPU or CPU, so phases can be compared in one process.

``PeakMemory`` gives the growth of the peak over what was in use when the window opened.
GPU: ``torch.cuda.max_memory_allocated`` after a reset (what the paper reports).  CPU (Linux):
the peak resident set size, reset by writing 5 to ``/proc/self/clear_refs``; freed heap is
first handed back with ``malloc_trim`` so an earlier phase's leftovers do not hide this one's
growth.  ``tensor_mb`` counts what models, optimiser states and caches hold already.
"""

from __future__ import annotations

import ctypes
import gc
import resource
import sys
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim() -> None:
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass


class PeakMemory:
    """``with PeakMemory(device) as m: ...`` then ``m.peak_mb``."""

    def __init__(self, device: str | torch.device = "cpu"):
        self.cuda = torch.device(device).type == "cuda"
        self.peak_mb = float("nan")

    def __enter__(self) -> "PeakMemory":
        _trim()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.resettable = False
        try:
            _CLEAR_REFS.write_text("5")
            self.resettable = True
        except OSError:
            pass
        self.start = _status_kb("VmRSS") if self.resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak_mb = max(0, torch.cuda.max_memory_allocated() - self.start) / 2**20
        elif self.resettable:
            self.peak_mb = max(0, (_status_kb("VmHWM") or 0) - (self.start or 0)) / 1024
        else:  # peak of the process so far (kB on Linux, bytes on macOS): growth is all we can say
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            scale = 2**20 if sys.platform == "darwin" else 1024
            self.peak_mb = max(0, peak - self.start) / scale


def sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def tensor_mb(*objects) -> float:
    """MB held by the tensors of modules, optimisers (their states), tensors, or objects with a
    ``__dict__`` of those; each storage counted once."""
    seen: dict[int, int] = {}

    def visit(obj, depth=0):
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        elif isinstance(obj, torch.nn.Module):
            for t in list(obj.parameters()) + list(obj.buffers()):
                visit(t)
        elif isinstance(obj, torch.optim.Optimizer):
            for state in obj.state.values():
                for t in state.values():
                    visit(t)
        elif isinstance(obj, (list, tuple)):
            for o in obj:
                visit(o, depth)
        elif isinstance(obj, dict):
            for o in obj.values():
                visit(o, depth)
        elif depth < 2 and hasattr(obj, "__dict__"):
            for o in vars(obj).values():
                visit(o, depth + 1)

    for obj in objects:
        visit(obj)
    return sum(seen.values()) / 2**20
