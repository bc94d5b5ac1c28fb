"""A suite expanded into cells: the transfer matrix.

A cell is one unit of work with a config that names everything it depends on; its id is the
content hash of that config.  Training cells (an FT model or a PRT reward of one base) are
shared by every evaluation cell that uses them: an evaluation cell's config holds the ids of
its training cells, so a changed training config changes, and reruns, exactly the cells that
depend on it.

Per task, seed and transfer source -> target (method names as in the results store):

- ``zeroshot``     every source and target alone
- ``ft_source``    the source fine-tuned, evaluated by itself   (train: ft of source)
- ``ft_target``    the target fine-tuned: the upper bound         (train: ft of target)
- ``prt``          target base + reward trained on the source     (train: prt of source)
- ``eft``          target + (ft of source - source)               (train: ft of source)
- ``reward_only``  softmax of the reward alone                   (train: prt of source)
- ``same_base``    (option) prt/eft on the source itself, scenario "same_base"
- the alpha sweep: prt (and reward_only) at each alpha of ``alpha_sweep`` for its transfers.
- the λ sweep: prt at each λ of ``lam_sweep`` (eq. 10's 1/λ is the reward's strength at
  inference) for its transfers, with the reward of the main α: no retraining; with
  ``methods: [prt, eft]`` EFT too, its implicit reward at the same strength (``strength``
  λ_train / λ in the config; proxy-tuning's α).  Every evaluation config holds its λ, the
  trained one (``train.lam``, 1 when unset) unless swept.
- a task with ``probe_of: TASK`` is a knowledge probe of TASK (the world card's P1): every base
  alone on it, whatever the methods, and no other cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prt_bench import methods as method_table
from prt_bench.io import config_hash
from prt_bench.suite import modalities
from prt_bench.suite.schema import Section, Suite, Transfer


@dataclass
class Cell:
    cell_id: str
    kind: str                      # "train" | "eval"
    modality: str
    task: str
    scenario: str | None
    method: str                    # train: "ft" | "prt"; eval: one of schema.METHODS
    source: str | None
    target: str
    alpha: float
    seed: int
    config: dict[str, Any]
    needs: dict[str, str] = field(default_factory=dict)   # role ("reward", "ft") -> training cell id
    lam: float | None = None       # an inference λ other than the trained one (the λ sweep)
    merge: str | None = None       # a merge cell's set and weights, for its label

    @property
    def label(self) -> str:
        if self.kind == "train":
            extra = f" alpha={self.alpha:g}" if self.method == "prt" else ""
            return f"train {self.modality} {self.method} {self.target} on {self.task}{extra} seed={self.seed}"
        pair = f"{self.source} -> {self.target}" if self.source and self.source != self.target else self.target
        extra = f" alpha={self.alpha:g}" if self.method in method_table.WITH_ALPHA else ""
        extra += f" lam={self.lam:g}" if self.lam is not None else ""
        extra += f" {self.merge}" if self.merge else ""
        return f"eval {self.modality} {self.task} {self.method} {pair}{extra} seed={self.seed}"


def base_ref(section: Section, name: str) -> dict[str, Any]:
    return {"name": name, **section.bases[name]}


def expand(suite: Suite) -> list[Cell]:
    """Every cell of the suite, training cells first, each once (deduplicated by id)."""
    cells: dict[str, Cell] = {}
    for section in suite.sections.values():
        for seed in suite.seeds:
            for task in section.tasks:
                _expand_task(section, task, seed, cells)
            for merge in section.merges:
                _expand_merge(section, merge, seed, cells)
    ordered = sorted(cells.values(), key=lambda c: c.kind != "train")  # stable: keeps the suite's order within
    return ordered


def _expand_task(section: Section, task: str, seed: int, cells: dict[str, Cell]) -> None:
    methods = set(section.methods)
    probe = bool(section.tasks[task].get("probe_of"))  # a knowledge probe trains nothing
    data_name, data = (task, None) if probe else modalities.get(section.modality).train_data(section, task)
    hyper = {k: v for k, v in section.train.items() if k != "data"}

    def train(method: str, base: str, alpha: float = 0.0) -> str:
        config = {"kind": "train", "modality": section.modality, "method": method, "base": base_ref(section, base),
                  "data": data, "train": hyper, "seed": seed}
        if method == "prt":
            config["alpha"] = alpha
        cell = Cell(config_hash(config), "train", section.modality, data_name, None, method, None, base,
                    alpha, seed, config)
        cells.setdefault(cell.cell_id, cell)
        return cell.cell_id

    trained_lam = float(section.train.get("lam", 1.0))

    def evaluate(method: str, target: str, source: str | None, scenario: str | None, alpha: float = 0.0,
                 needs: dict[str, str] | None = None, lam: float | None = None) -> None:
        config = {"kind": "eval", "modality": section.modality, "method": method, "task": task,
                  "task_config": section.tasks[task], "target": base_ref(section, target),
                  "source": base_ref(section, source) if source else None, "scenario": scenario,
                  "eval": section.eval, "lam": trained_lam if lam is None else lam, "seed": seed,
                  "trained": dict(sorted((needs or {}).items()))}
        if method in method_table.WITH_ALPHA:
            config["alpha"] = alpha
        if method == "eft" and lam not in (None, trained_lam):
            # EFT's implicit reward log π_ft − log π_pt is the FT model's reward / λ_train (eq. 10
            # with π_ft for p): at λ it enters with strength λ_train / λ, as PRT's reward does
            config["strength"] = trained_lam / lam
        cell = Cell(config_hash(config), "eval", section.modality, task, scenario, method, source, target,
                    alpha, seed, config, dict(needs or {}), None if lam in (None, trained_lam) else lam)
        cells.setdefault(cell.cell_id, cell)

    bases = _unique([b for t in section.transfers for b in (t.source, t.target)])
    if probe:  # every base alone, nothing else
        for base in bases:
            evaluate("zeroshot", base, None, None)
        return
    if "zeroshot" in methods:
        for base in bases:
            evaluate("zeroshot", base, None, None)
    for t in section.transfers:
        if "ft_source" in methods:
            evaluate("ft_source", t.source, t.source, None, needs={"ft": train("ft", t.source)})
        if "ft_target" in methods:
            evaluate("ft_target", t.target, None, None, needs={"ft": train("ft", t.target)})
        _transfer_cells(section, t, methods, section.alpha, train, evaluate)
        if section.same_base:
            # PRT on the base it was trained on: the reward recovers FT there (Prop. 3.1).
            _transfer_cells(section, Transfer(t.source, t.source, "same_base"), methods & {"prt"}, section.alpha,
                            train, evaluate)
    for t in section.sweep_transfers:
        for alpha in section.sweep_alphas:
            _transfer_cells(section, t, methods - {"eft"}, alpha, train, evaluate)
    for t in section.lam_transfers:
        for lam in section.sweep_lams:
            if "prt" in section.lam_methods:
                evaluate("prt", t.target, t.source, t.scenario, section.alpha,
                         needs={"reward": train("prt", t.source, section.alpha)}, lam=lam)
            if "eft" in section.lam_methods:
                evaluate("eft", t.target, t.source, t.scenario, needs={"ft": train("ft", t.source)}, lam=lam)


def _transfer_cells(section: Section, t: Transfer, methods: set[str], alpha: float, train, evaluate) -> None:
    if "prt" in methods:
        evaluate("prt", t.target, t.source, t.scenario, alpha, needs={"reward": train("prt", t.source, alpha)})
    if "eft" in methods:
        evaluate("eft", t.target, t.source, t.scenario, needs={"ft": train("ft", t.source)})
    if "reward_only" in methods:
        # The reward alone does not depend on the target: one cell per source and alpha.
        evaluate("reward_only", t.source, t.source, None, alpha, needs={"reward": train("prt", t.source, alpha)})


def train_cell(section: Section, method: str, base: str, task: str | list[str], seed: int, alpha: float = 0.0) -> Cell:
    """The training cell of ``method`` on ``base`` with the data of ``task`` -- or, for a list of
    tasks, of all of them (multi-task FT): the same config, so the same id, as the matrix's."""
    modality = modalities.get(section.modality)
    names, specs = zip(*(modality.train_data(section, t) for t in ([task] if isinstance(task, str) else task)))
    hyper = {k: v for k, v in section.train.items() if k != "data"}
    config = {"kind": "train", "modality": section.modality, "method": method, "base": base_ref(section, base),
              "data": specs[0] if isinstance(task, str) else list(specs), "train": hyper, "seed": seed}
    if method == "prt":
        config["alpha"] = alpha
    return Cell(config_hash(config), "train", section.modality, "+".join(names), None, method, None, base, alpha,
                seed, config)


def _expand_merge(section: Section, merge, seed: int, cells: dict[str, Cell]) -> None:
    """Reward arithmetic (a section's ``merges:``), evaluated on every task of the set:

    - ``merge_prt``  each target + Σ w_i r_i, the rewards trained on each task from the source;
                     one cell per weight vector, and one per single reward (weight 1 alone);
    - ``merge_eft``  each target + Σ w_i (log π_ft,i − log π_source), the FT models of the source;
    - ``merge_ta``   task arithmetic on the source: θ_source + Σ w_i (θ_ft,i − θ_source);
    - ``merge_ft``   each target fine-tuned on all the tasks' data at once: the upper bound;
    - ``zeroshot``   each target alone (the gains are measured from it).
    """
    def add(cell: Cell) -> str:
        cells.setdefault(cell.cell_id, cell)
        return cell.cell_id

    scenario = {t.target: t.scenario for t in section.transfers if t.source == merge.source}
    rewards = [add(train_cell(section, "prt", merge.source, t, seed, section.alpha)) for t in merge.tasks]
    fts = [add(train_cell(section, "ft", merge.source, t, seed)) for t in merge.tasks]
    singles = [tuple(1.0 if j == i else 0.0 for j in range(len(merge.tasks))) for i in range(len(merge.tasks))]
    trained_lam = float(section.train.get("lam", 1.0))

    def evaluate(method: str, target: str, task: str, needs: dict[str, str], weights=None) -> None:
        source = None if method in ("zeroshot", "merge_ft") else merge.source
        info = {"set": merge.name, "tasks": list(merge.tasks)}
        if weights is not None:
            info["weights"] = list(weights)
        config = {"kind": "eval", "modality": section.modality, "method": method, "task": task,
                  "task_config": section.tasks[task], "target": base_ref(section, target),
                  "source": base_ref(section, source) if source else None,
                  "scenario": (None if source is None else "same_base" if target == merge.source
                               else scenario.get(target)),
                  "eval": section.eval,
                  "lam": trained_lam, "seed": seed, "trained": dict(sorted(needs.items()))}
        if method != "zeroshot":
            config["merge"] = info
        if method == "merge_prt":
            config["alpha"] = section.alpha
        label = None if method == "zeroshot" else f"set={merge.name}" + (
            f" w={','.join(f'{w:g}' for w in weights)}" if weights is not None else "")
        add(Cell(config_hash(config), "eval", section.modality, task, config["scenario"], method, source, target,
                 section.alpha, seed, config, dict(needs), None, label))

    for task in merge.tasks:
        for target in merge.targets:
            evaluate("zeroshot", target, task, {})
            for w in [*singles, *merge.weights]:
                kept = [(i, x) for i, x in enumerate(w) if x != 0.0]
                # roles reward<i> / ft<i> for the tasks whose weight is not 0; the config keeps the whole vector
                if "prt" in merge.methods:
                    evaluate("merge_prt", target, task, {f"reward{i}": rewards[i] for i, _ in kept}, w)
                if "eft" in merge.methods and w not in singles:
                    evaluate("merge_eft", target, task, {f"ft{i}": fts[i] for i, _ in kept}, w)
                if "task_arithmetic" in merge.methods and target == merge.source and w not in singles:
                    evaluate("merge_ta", target, task, {f"ft{i}": fts[i] for i, _ in kept}, w)
            if "ft_multitask" in merge.methods:
                multitask = add(train_cell(section, "ft", target, list(merge.tasks), seed))
                evaluate("merge_ft", target, task, {"ft": multitask})


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
