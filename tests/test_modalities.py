"""The modality contract: the suite core names no modality, and a third modality is one class
registered beside the two there are -- the runner trains, evaluates, stores and resumes its
cells without a line of the core changing."""

import re
from pathlib import Path

import pytest

from prt_bench.suite import modalities
from prt_bench.suite.modalities import Modality
from prt_bench.suite.runner import RunOptions, run_suite
from prt_bench.suite.store import read_cell

CORE = Path(modalities.__file__).parents[1]


def test_the_suite_core_names_no_modality():
    named = re.compile(r"\b(lm|vision|lm_eval|open_clip)\b", re.IGNORECASE)
    offenders = [f"{p.name}:{i}: {line.strip()}" for p in sorted(CORE.glob("*.py"))
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if named.search(line)]
    assert offenders == []
    assert set(modalities.names()) >= {"lm", "vision"}


class Counter(Modality):
    """A toy modality: a "model" is one number in a safetensors file; FT adds the training
    steps to it, a PRT reward the steps times two; a method scores the number it ends up with."""

    name = "counter"
    base_kinds = ("tiny",)
    task_keys = {"goal", "primary_metric"}
    task_required = "goal"
    eval_keys = set()
    methods = ("zeroshot", "ft_target", "prt")
    default_primary = "value,none"
    profile_settings = {}

    @property
    def train_keys(self):
        return {"steps"}

    @staticmethod
    def _write(out: Path, value: float) -> None:
        import torch
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        save_file({"value": torch.tensor([float(value)])}, str(out / "model.safetensors"))

    @staticmethod
    def _read(path: str) -> float:
        from safetensors.torch import load_file

        return float(load_file(str(Path(path) / "model.safetensors"))["value"][0])

    def build_tiny(self, options, out):
        self._write(out, options["value"])

    def train_data(self, section, task):
        return "counts", {"goal": section.tasks[task]["goal"]}

    def train(self, method, base, data, out, *, seed, alpha, options):
        step = 1 if method == "ft" else 2
        self._write(out, self._read(base) + step * options["steps"])

    def evaluate(self, method, paths, task, options, *, lam, seed):
        value = {"zeroshot": lambda: self._read(paths["target"]), "ft_target": lambda: self._read(paths["model"]),
                 "prt": lambda: self._read(paths["target"]) + self._read(paths["reward"]) / lam}[method]()
        samples = {"header": {"goal": task["goal"]}, "rows": [{"id": 0, "value": value}]}
        return self.rescore(samples["header"], samples["rows"], task), samples

    def rescore(self, header, rows, task):
        value = rows[0]["value"]
        return {"value,none": value, "reached,none": float(value >= header["goal"]), "n_samples": len(rows)}

    def item_scores(self, header, rows, metric):
        return {str(r["id"]): float(r["value"]) for r in rows}


SUITE = """
name: counting
seeds: [0]
counter:
  families:
    counters:
      small: {tiny: {value: 1}}
      big: {tiny: {value: 10}}
  transfers:
    - {source: small, target: big, scenario: upscaling}
  tasks:
    count: {goal: 12}
  train: {steps: 3}
  methods: [zeroshot, ft_target, prt]
"""


def test_a_third_modality_runs_through_the_unchanged_core(tmp_path, monkeypatch):
    monkeypatch.setitem(modalities.REGISTRY, "counter", Counter())
    path = tmp_path / "counting.yaml"
    path.write_text(SUITE)
    options = RunOptions(results=tmp_path / "results", runs=tmp_path / "runs", cache=tmp_path / "cache", gpus=[],
                         report=False, progress=False, profile=False, compare=False)
    summary = run_suite(path, options)
    assert summary.failed == {}
    records = [read_cell(summary.results_dir, cell_id) for cell_id in summary.ran]
    values = {(r["method"], r["target"]): r["results"]["count"]["value,none"] for r in records if r["kind"] == "eval"}
    # zeroshot of each base; FT of big: 10 + 3; PRT on big with a reward trained on small: 10 + (1 + 2*3)
    assert values == {("zeroshot", "small"): 1.0, ("zeroshot", "big"): 10.0, ("ft_target", "big"): 13.0,
                      ("prt", "big"): 17.0}
    again = run_suite(path, options)
    assert again.ran == [] and again.already_done == again.total == len(summary.ran)


def test_an_unregistered_section_is_an_unknown_key(tmp_path):
    from prt_bench.suite.schema import SuiteError, load_suite

    path = tmp_path / "counting.yaml"
    path.write_text(SUITE)
    with pytest.raises(SuiteError, match="unknown key 'counter'"):
        load_suite(path)


@pytest.mark.parametrize("strength, expected", [(None, ""), (2.0, ",ft_weights=2.0")])
def test_an_eft_cell_of_the_lam_sweep_gives_lm_eval_its_strength(monkeypatch, strength, expected):
    import lm_eval
    import torch

    seen = {}

    class Called(Exception):
        pass

    def simple_evaluate(**kwargs):
        seen.update(kwargs)
        raise Called

    monkeypatch.setattr(lm_eval, "simple_evaluate", simple_evaluate)
    paths = {"target": "T", "ft": "F", "source": "S"}
    with pytest.raises(Called):
        modalities.get("lm").evaluate("eft", paths, {"lm_eval_task": "t"}, {}, lam=1.0, seed=0, strength=strength)
    assert seen["model"] == "eft"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert seen["model_args"] == f"base=T,ft=F,pt=S,dtype=float32,device={device}{expected}"
