"""Checks that need files, run after the bases exist and before any training: every
source/target pair can be combined and every task's data is there (each modality's
``check_files`` says what that means for it).  Each failure is a SuiteError naming the suite,
the pair or task, and the problem."""

from __future__ import annotations

from pathlib import Path

from prt_bench.suite import modalities
from prt_bench.suite.schema import Suite, SuiteError


def check_before_training(suite: Suite, names: set[str], resolved: dict[tuple[str, str], str] | None,
                          worlds: dict[str, dict[str, str]], cache: Path | None = None) -> None:
    """Raise SuiteError for the first problem in the sections that have work to do.

    Called twice: before the bases are built (``resolved`` None: tasks, data, label sets), and
    after (``resolved``: (modality, base) -> what the recipes load; e.g. tokenizers of each pair).
    ``cache``: the run's ``--cache`` (where a check may read files it has to prepare)."""
    for name in sorted(names):
        mine = None if resolved is None else {base: p for (m, base), p in resolved.items() if m == name}
        try:
            modalities.get(name).check_files(suite, suite.sections[name], mine, worlds.get(name), cache)
        except SuiteError:
            raise
        except ValueError as e:
            raise SuiteError(str(e)) from None
