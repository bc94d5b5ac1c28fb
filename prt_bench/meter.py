"""The memory meter of the whole project: the peak of one window of work, on GPU or CPU.

``PeakMemory`` gives the window's peak (``peak_mb``) and its growth over what was in use when
the window opened (``growth_mb``).  GPU: ``torch.cuda.max_memory_allocated`` after a reset (what
the paper reports).  CPU (Linux): the resident set's high-water mark ``VmHWM``, reset by writing
5 to ``/proc/self/clear_refs``; freed heap is first handed back with ``malloc_trim`` so an
earlier phase's leftovers do not hide this one's growth.  Where the mark cannot be reset, the
process's peak so far (``ru_maxrss``) is all there is.  ``tensor_mb`` counts what models,
optimiser states and caches hold already.  torch is imported only when a meter is used.
"""

from __future__ import annotations

import ctypes
import gc
import resource
import sys
from pathlib import Path

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
    """``with PeakMemory(device) as m: ...`` then ``m.peak_mb`` and ``m.growth_mb``."""

    def __init__(self, device="cpu"):
        import torch

        self.cuda = torch.device(device).type == "cuda"
        self.peak_mb = self.growth_mb = float("nan")

    def __enter__(self) -> "PeakMemory":
        import torch

        _trim()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated() / 2**20
            return self
        self.resettable = False
        try:
            _CLEAR_REFS.write_text("5")
            self.resettable = True
        except OSError:
            pass
        self.start = (_status_kb("VmRSS") or 0) / 1024 if self.resettable else _max_rss_mb()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        elif self.resettable:
            self.peak_mb = (_status_kb("VmHWM") or 0) / 1024
        else:  # the peak of the process so far: the growth is all it can say about this window
            self.peak_mb = _max_rss_mb()
        self.growth_mb = max(0.0, self.peak_mb - self.start)


def _max_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return peak / (2**20 if sys.platform == "darwin" else 1024)


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def tensor_mb(*objects) -> float:
    """MB held by the tensors of modules, optimisers (their states), tensors, or objects with a
    ``__dict__`` of those; each storage counted once."""
    import torch

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
