"""Checks that need files, run after the bases exist and before any training: every
source/target pair can be combined (same tokenizer for language, same label set for vision)
and every task's data is there.  Each failure is a SuiteError naming the suite, the pair or
task, and the problem."""

from __future__ import annotations

from typing import Any

from prt_bench.suite.schema import Suite, SuiteError


def check_before_training(suite: Suite, modalities: set[str], resolved: dict[tuple[str, str], str] | None,
                          worlds: dict[str, dict[str, str]]) -> None:
    """Raise SuiteError for the first problem in the sections that have work to do.

    Called twice: before the bases are built (``resolved`` None: tasks, data, label sets), and
    after (the tokenizers of every language pair, the mini world's data)."""
    if "lm" in modalities:
        if resolved is None:
            _check_lm_tasks_and_data(suite, None)
        else:
            _check_lm_tokenizers(suite, resolved)
            _check_lm_tasks_and_data(suite, worlds.get("lm"))
    if "vision" in modalities and resolved is None:
        _check_vision(suite)


def _check_lm_tokenizers(suite: Suite, resolved: dict) -> None:
    from prt_bench.lm.load import load_tokenizer
    from prt_bench.lm.vocab import tokenizer_difference

    section = suite.sections["lm"]
    where = f"{suite.path}: lm"
    tokenizers: dict[str, Any] = {}

    def tok(name: str):
        if name not in tokenizers:
            try:
                tokenizers[name] = load_tokenizer(resolved[("lm", name)])
            except Exception as e:  # noqa: BLE001
                raise SuiteError(f"{where}: cannot load the tokenizer of {name} ({resolved[('lm', name)]}): {e}") from e
        return tokenizers[name]

    for t in section.transfers:
        diff = tokenizer_difference(tok(t.source), tok(t.target))
        if diff:
            raise SuiteError(f"{where}.transfers: source {t.source} and target {t.target} have different "
                             f"tokenizers ({diff}); PRT and EFT need one shared tokenizer")


def _check_lm_tasks_and_data(suite: Suite, world: dict[str, str] | None) -> None:
    from pathlib import Path

    from prt_bench.suite.adapters import TASKS_DIR, resolve_data

    section = suite.sections["lm"]
    where = f"{suite.path}: lm"
    known = _lm_task_names(TASKS_DIR)
    for name, task in section.tasks.items():
        if task["lm_eval_task"] not in known:
            raise SuiteError(f"{where}.tasks.{name}: unknown lm-eval task {task['lm_eval_task']!r} "
                             f"(tasks in {TASKS_DIR}: {', '.join(sorted(known))})")
    for label, data in [("train.data", section.train.get("data"))] + [
            (f"tasks.{n}.train_data", t.get("train_data")) for n, t in section.tasks.items()]:
        if data is None or "hf_dataset" in data or ("mini" in data and world is None):
            continue
        try:
            path = resolve_data(data, world)
        except (KeyError, FileNotFoundError) as e:
            raise SuiteError(f"{where}.{label}: missing data: {e}") from None
        if not Path(path).is_file():
            raise SuiteError(f"{where}.{label}: missing data: {path} does not exist")


def _lm_task_names(tasks_dir) -> set[str]:
    import yaml

    names = set()
    for p in tasks_dir.rglob("*.yaml"):
        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            doc = None  # lm-eval's !function tags: the name is still readable below
        if isinstance(doc, dict) and isinstance(doc.get("task"), str):
            names.add(doc["task"])
        else:
            for line in p.read_text(encoding="utf-8").splitlines():
                if line.startswith("task:"):
                    names.add(line.split(":", 1)[1].strip().strip("'\""))
    return names


def _check_vision(suite: Suite) -> None:
    """Label sets first (known from the registry without data), then the data itself."""
    section = suite.sections["vision"]
    where = f"{suite.path}: vision"
    for name, task in section.tasks.items():
        train_name = task.get("train_dataset", task["dataset"])
        if _classnames(train_name, where, name) != _classnames(task["dataset"], where, name):
            raise SuiteError(f"{where}.tasks.{name}: the reward is trained on {train_name!r} and evaluated on "
                             f"{task['dataset']!r}, whose label sets differ; PRT needs one label set")
        for dataset, split in ((task["dataset"], task.get("split", "test")),
                               (train_name, task.get("train_split", "train"))):
            _require_dataset(dataset, split, where, name)


def _classnames(dataset: str, where: str, task: str) -> list[str]:
    from prt_bench.vision.datasets import REGISTRY, get_dataset

    if dataset in REGISTRY:
        return list(REGISTRY[dataset].classnames)
    try:
        return list(get_dataset(dataset, "test").classnames)
    except (KeyError, ValueError) as e:
        raise SuiteError(f"{where}.tasks.{task}: unknown dataset {dataset!r}: {e}") from None
    except (FileNotFoundError, OSError) as e:
        raise SuiteError(f"{where}.tasks.{task}: missing data for {dataset!r}: {e}") from None


def _require_dataset(dataset: str, split: str, where: str, task: str) -> None:
    from prt_bench.vision.datasets import get_dataset

    try:
        n = len(get_dataset(dataset, split))
    except (FileNotFoundError, OSError) as e:
        raise SuiteError(f"{where}.tasks.{task}: missing data for {dataset!r} ({split}): {e}") from None
    except (KeyError, ValueError) as e:
        raise SuiteError(f"{where}.tasks.{task}: unknown dataset or split {dataset!r} ({split}): {e}") from None
    if n == 0:
        raise SuiteError(f"{where}.tasks.{task}: the split {split!r} of {dataset!r} holds no images")
