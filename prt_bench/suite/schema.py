"""Suite files: what a suite may say, and the checks that run before any model is touched.

A suite (``suites/<name>.yaml``) has one section per modality (the names registered in
``prt_bench.suite.modalities``, which also say what each section may hold).  Each section
names its base families, the transfers (source base -> target base, with the
paper's scenario), its tasks, the training recipe's hyperparameters, the methods to run and
the PRT alpha sweep.  Everything here is static: no model, tokenizer or dataset is loaded
(``--dry-run`` of the paper suites works offline).  The checks that need files (tokenizers,
label sets, data) are the modalities' ``check_files``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prt_bench import methods as method_table
from prt_bench.io import REPO_ROOT, finite_number, name_problem
from prt_bench.suite import modalities

SUITES_DIR = REPO_ROOT / "suites"
METHODS = method_table.METHODS
SCENARIOS = ("upscaling", "update", "other_arch", "same_base")
PAPER_ALPHAS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.1)

TOP_KEYS = {"name", "description", "seeds"}   # and one section per registered modality
SECTION_KEYS = {"families", "transfers", "same_base", "tasks", "train", "eval", "methods", "alpha", "alpha_sweep",
                "lam_sweep", "merges"}
TRANSFER_KEYS = {"source", "target", "scenario"}
SWEEP_KEYS = {"alphas", "transfers"}
LAM_SWEEP_KEYS = {"lams", "transfers", "methods"}
LAM_SWEEP_METHODS = ("prt", "eft")  # PRT at 1/λ (eq. 10); EFT with its implicit reward at the same strength
MERGE_KEYS = {"name", "tasks", "source", "targets", "weights", "methods"}
# what a merge set compares (prt_bench/suite/plan.py): the rewards summed (eq. 10 with r = Σ w_i r_i),
# the EFT implicit rewards summed, weight-space task arithmetic on the source, multi-task FT of each target
MERGE_METHODS = ("prt", "eft", "task_arithmetic", "ft_multitask")
# Types and ranges of the numeric options (train, eval, tasks): checked when the file is read, so
# that `lr: "fast"` or `batch_size: 0` fail at once, naming the key, not per cell after the bases.
_INT, _NUM = (int,), (int, float)
OPTION_RULES: dict[str, tuple[tuple[type, ...], float, bool]] = {   # key: (types, bound, bound allowed)
    "lr": (_NUM, 0, False), "lam": (_NUM, 0, False), "epochs": (_NUM, 0, False), "grad_clip": (_NUM, 0, False),
    "max_grad_norm": (_NUM, 0, False), "weight_decay": (_NUM, 0, True), "warmup": (_NUM, 0, True),
    "lora_dropout": (_NUM, 0, True), "steps": (_INT, 1, True), "max_steps": (_INT, 1, True),
    "batch_size": (_INT, 1, True), "grad_accum": (_INT, 1, True), "max_length": (_INT, 1, True),
    "lora_r": (_INT, 1, True), "lora_alpha": (_NUM, 0, False), "limit": (_INT, 1, True),
    "num_fewshot": (_INT, 0, True), "max_gen_toks": (_INT, 1, True),
}


class SuiteError(ValueError):
    """A suite file that cannot run; the message names the file, the place and the problem."""


@dataclass(frozen=True)
class Transfer:
    source: str
    target: str
    scenario: str


@dataclass(frozen=True)
class Merge:
    """Rewards (and FT models) trained on several tasks from one source, combined on each target
    and evaluated on every task of the set."""
    name: str
    tasks: tuple[str, ...]
    source: str
    targets: tuple[str, ...]
    weights: tuple[tuple[float, ...], ...]    # one weight per task, per combination
    methods: tuple[str, ...]


@dataclass
class Section:
    """One modality of a suite, as written in the file (validated)."""

    modality: str
    bases: dict[str, dict[str, Any]]        # name -> spec, with "family" added
    transfers: list[Transfer]
    same_base: bool
    tasks: dict[str, dict[str, Any]]
    train: dict[str, Any]
    eval: dict[str, Any]
    methods: list[str]
    alpha: float
    sweep_alphas: list[float]
    sweep_transfers: list[Transfer]
    sweep_lams: list[float] = field(default_factory=list)        # PRT's λ at inference (eq. 10), no retraining
    lam_methods: list[str] = field(default_factory=lambda: ["prt"])  # what the λ sweep evaluates: prt, eft
    lam_transfers: list[Transfer] = field(default_factory=list)
    merges: list["Merge"] = field(default_factory=list)          # reward arithmetic across tasks

    @property
    def sources(self) -> list[str]:
        return sorted({t.source for t in self.transfers})

    @property
    def targets(self) -> list[str]:
        return sorted({t.target for t in self.transfers})


@dataclass
class Suite:
    name: str
    path: Path
    description: str
    seeds: list[int]
    sections: dict[str, Section] = field(default_factory=dict)


def suite_path(suite: str | Path) -> Path:
    """`mini` -> suites/mini.yaml; anything with a slash or a .yaml suffix is a path."""
    s = str(suite)
    if "/" in s or s.endswith((".yaml", ".yml")):
        p = Path(s)
    else:
        p = SUITES_DIR / f"{s}.yaml"
        if not p.is_file():
            known = sorted(q.stem for q in SUITES_DIR.glob("*.yaml"))
            raise SuiteError(f"unknown suite {s!r}; suites in {SUITES_DIR}: {', '.join(known)}")
    if not p.is_file():
        raise SuiteError(f"suite file {p} does not exist")
    return p


def load_suite(suite: str | Path) -> Suite:
    import yaml

    path = suite_path(suite)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_unique_key_loader())
    except yaml.YAMLError as e:
        raise SuiteError(f"{path}: not valid YAML: {e}") from None
    return parse_suite(raw, path)


def _unique_key_loader():
    """YAML's safe loader, except that a key given twice in one mapping is an error (YAML
    itself keeps the last silently: a base declared twice, `lr` twice)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice in one mapping (lines {seen[key]} and {line})",
                        key_node.start_mark)
                seen[key] = line
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def parse_suite(raw: Any, path: Path) -> Suite:
    where = str(path)
    _mapping(raw, where)
    sections = modalities.names()
    _keys(raw, TOP_KEYS | set(sections), where)
    if "name" not in raw:
        raise SuiteError(f"{where}: missing key 'name'")
    problem = name_problem(raw["name"], "suite name")  # it names the results and checkpoint folders
    if problem:
        raise SuiteError(f"{where}: {problem}")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise SuiteError(f"{where}: seeds must be a non-empty list of integers, got {seeds!r}")
    suite = Suite(name=str(raw["name"]), path=path, description=str(raw.get("description", "")), seeds=seeds)
    for modality in sections:
        if modality in raw:
            others = {m: list((raw[m] or {}).get("tasks") or {}) for m in sections
                      if m != modality and isinstance(raw.get(m), dict) and isinstance(raw[m].get("tasks"), dict)}
            suite.sections[modality] = _section(raw[modality], modality, f"{where}: {modality}", others)
    if not suite.sections:
        raise SuiteError(f"{where}: a suite needs at least one of the sections {', '.join(sections)}")
    return suite


def _section(raw: Any, modality: str, where: str, others: dict[str, list[str]] | None = None) -> Section:
    _mapping(raw, where)
    _keys(raw, SECTION_KEYS, where)
    mod = modalities.get(modality)
    for key in ("families", "transfers", "tasks"):
        if key not in raw:
            raise SuiteError(f"{where}: missing key {key!r}")

    bases: dict[str, dict[str, Any]] = {}
    _mapping(raw["families"], f"{where}.families")
    for family, members in raw["families"].items():
        _mapping(members, f"{where}.families.{family}")
        for name, spec in members.items():
            if name in bases:
                raise SuiteError(f"{where}.families.{family}: base {name!r} is declared twice")
            bases[name] = {**_base(spec, modality, f"{where}.families.{family}.{name}"), "family": str(family)}

    transfers = _transfers(raw["transfers"], bases, f"{where}.transfers")
    if not transfers:
        raise SuiteError(f"{where}.transfers: needs at least one transfer (source -> target)")
    methods = raw.get("methods", list(METHODS))
    if not isinstance(methods, list) or not methods:
        raise SuiteError(f"{where}.methods: must be a non-empty list, got {methods!r}")
    for m in methods:
        if m not in METHODS:
            raise SuiteError(f"{where}.methods: unknown method {m!r} (known: {', '.join(METHODS)})")
        if m not in mod.methods:
            raise SuiteError(f"{where}.methods: {m} is not defined for {modality} (it defines: "
                             f"{', '.join(mod.methods)})")

    tasks = raw["tasks"]
    _mapping(tasks, f"{where}.tasks")
    if not tasks:
        raise SuiteError(f"{where}.tasks: needs at least one task")
    for name, task in tasks.items():
        _mapping(task, f"{where}.tasks.{name}")
        _keys(task, mod.task_keys | {"probe_of"}, f"{where}.tasks.{name}")
        if mod.task_required not in task:
            raise SuiteError(f"{where}.tasks.{name}: missing key {mod.task_required!r}")
        probed = task.get("probe_of")
        if probed is not None and (probed == name or probed not in tasks or "probe_of" in tasks[probed]):
            raise SuiteError(f"{where}.tasks.{name}.probe_of: names the task of this section whose knowledge it "
                             f"probes (not a probe itself), one of {', '.join(t for t in tasks if t != name)}; "
                             f"got {probed!r}")

    train = raw.get("train", {}) or {}
    _mapping(train, f"{where}.train")
    _keys(train, mod.train_keys, f"{where}.train")
    _options(train, f"{where}.train")
    try:
        mod.check_section(train, tasks, where)
    except ValueError as e:
        raise SuiteError(str(e)) from None
    evaluation = raw.get("eval", {}) or {}
    _mapping(evaluation, f"{where}.eval")
    _keys(evaluation, mod.eval_keys, f"{where}.eval")
    _options(evaluation, f"{where}.eval")
    for name, task in tasks.items():
        _options(task, f"{where}.tasks.{name}")

    alpha = _alpha(raw.get("alpha", 0.0), f"{where}.alpha")
    sweep = raw.get("alpha_sweep") or {}
    _mapping(sweep, f"{where}.alpha_sweep")
    _keys(sweep, SWEEP_KEYS, f"{where}.alpha_sweep")
    sweep_alphas = [_alpha(a, f"{where}.alpha_sweep.alphas") for a in sweep.get("alphas", [])]
    sweep_transfers = _transfers(sweep.get("transfers", []), bases, f"{where}.alpha_sweep.transfers")
    declared = {(t.source, t.target) for t in transfers}
    for t in sweep_transfers:
        if (t.source, t.target) not in declared:
            raise SuiteError(f"{where}.alpha_sweep.transfers: {t.source} -> {t.target} is not one of the transfers")
    if sweep_alphas and not sweep_transfers:
        raise SuiteError(f"{where}.alpha_sweep: alphas given but no transfers to sweep")
    sweep_transfers = [next(x for x in transfers if (x.source, x.target) == (t.source, t.target))
                       for t in sweep_transfers]
    lam_sweep = raw.get("lam_sweep") or {}
    _mapping(lam_sweep, f"{where}.lam_sweep")
    _keys(lam_sweep, LAM_SWEEP_KEYS, f"{where}.lam_sweep")
    lams = lam_sweep.get("lams", [])
    if not isinstance(lams, list):
        raise SuiteError(f"{where}.lam_sweep.lams: expected a list of numbers, got {lams!r}")
    for lam in lams:
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not (math.isfinite(lam) and lam > 0):
            raise SuiteError(f"{where}.lam_sweep.lams: λ must be a finite number > 0, got {lam!r}")
    lam_transfers = _transfers(lam_sweep.get("transfers", []), bases, f"{where}.lam_sweep.transfers")
    for t in lam_transfers:
        if (t.source, t.target) not in declared and t.source != t.target:
            raise SuiteError(f"{where}.lam_sweep.transfers: {t.source} -> {t.target} is not one of the transfers")
    if lams and not lam_transfers:
        raise SuiteError(f"{where}.lam_sweep: lams given but no transfers to sweep")
    lam_methods = lam_sweep.get("methods", ["prt"])
    if not isinstance(lam_methods, list) or not lam_methods or any(m not in LAM_SWEEP_METHODS for m in lam_methods):
        raise SuiteError(f"{where}.lam_sweep.methods: expected a non-empty list of {', '.join(LAM_SWEEP_METHODS)}, "
                         f"got {lam_methods!r}")
    if "eft" in lam_methods and not mod.eft_strength:
        raise SuiteError(f"{where}.lam_sweep.methods: the {modality} modality has no EFT strength (language has)")
    for m in lam_methods if lams else []:
        if m not in methods:
            raise SuiteError(f"{where}.lam_sweep: the λ sweep evaluates {m}, which the section's methods leave out")
    lam_transfers = [next((x for x in transfers if (x.source, x.target) == (t.source, t.target)),
                          Transfer(t.source, t.target, "same_base")) for t in lam_transfers]
    if raw.get("merges") and not mod.merges:
        raise SuiteError(f"{where}.merges: the {modality} modality has no reward arithmetic cells (language has)")
    merges = _merges(raw.get("merges") or [], bases, tasks, f"{where}.merges",
                     {t: m for m, names in (others or {}).items() for t in names if t not in tasks})
    return Section(modality=modality, bases=bases, transfers=transfers, same_base=bool(raw.get("same_base", False)),
                   tasks=dict(tasks), train=dict(train), eval=dict(evaluation), methods=list(methods), alpha=alpha,
                   sweep_alphas=sweep_alphas, sweep_transfers=sweep_transfers,
                   sweep_lams=[float(x) for x in lams], lam_transfers=lam_transfers, lam_methods=list(lam_methods),
                   merges=merges)


def _merges(raw: Any, bases: dict[str, Any], tasks: dict[str, Any], where: str,
            elsewhere: dict[str, str]) -> list[Merge]:
    if not isinstance(raw, list):
        raise SuiteError(f"{where}: must be a list of merge sets {{name, tasks, source, targets, weights}}, "
                         f"got {raw!r}")
    out: list[Merge] = []
    for i, m in enumerate(raw):
        at = f"{where}[{i}]"
        _mapping(m, at)
        _keys(m, MERGE_KEYS, at)
        for key in ("name", "tasks", "source", "targets", "weights"):
            if key not in m:
                raise SuiteError(f"{at}: missing key {key!r}")
        problem = name_problem(m["name"], "merge set name") or (
            f"{m['name']!r} is used twice" if m["name"] in {x.name for x in out} else None)
        if problem:
            raise SuiteError(f"{at}.name: {problem}")
        names = m["tasks"]
        if not (isinstance(names, list) and len(names) >= 2 and len(set(map(str, names))) == len(names)):
            raise SuiteError(f"{at}.tasks: a list of at least two different tasks, got {names!r}")
        for t in names:
            if t in elsewhere:
                raise SuiteError(f"{at}.tasks: {t!r} is a task of the {elsewhere[t]} section; a merge set combines "
                                 "rewards of one modality (its tasks: those of this section)")
            if t not in tasks:
                raise SuiteError(f"{at}.tasks: {t!r} is not a task of this section (its tasks: {', '.join(tasks)})")
        if m["source"] not in bases:
            raise SuiteError(f"{at}.source: unknown base {m['source']!r} (bases: {', '.join(bases)})")
        targets = m["targets"]
        if not (isinstance(targets, list) and targets):
            raise SuiteError(f"{at}.targets: a non-empty list of bases, got {targets!r}")
        for t in targets:
            if t not in bases:
                raise SuiteError(f"{at}.targets: unknown base {t!r} (bases: {', '.join(bases)})")
        weights = m["weights"]
        if not (isinstance(weights, list) and weights):
            raise SuiteError(f"{at}.weights: a list of weight lists (one weight per task), got {weights!r}")
        for w in weights:
            if not (isinstance(w, list) and len(w) == len(names) and all(finite_number(x) for x in w)):
                raise SuiteError(f"{at}.weights: each entry is {len(names)} finite numbers (one per task: "
                                 f"{', '.join(names)}), got {w!r}")
        methods = m.get("methods", list(MERGE_METHODS))
        if not (isinstance(methods, list) and methods and all(x in MERGE_METHODS for x in methods)):
            raise SuiteError(f"{at}.methods: a non-empty list of {', '.join(MERGE_METHODS)}, got {methods!r}")
        out.append(Merge(str(m["name"]), tuple(names), m["source"], tuple(targets),
                         tuple(tuple(float(x) for x in w) for w in weights), tuple(methods)))
    return out


def _base(spec: Any, modality: str, where: str) -> dict[str, Any]:
    mod = modalities.get(modality)
    _mapping(spec, where)
    kinds = [k for k in mod.base_kinds if k in spec]
    if len(kinds) != 1:
        raise SuiteError(f"{where}: a {modality} base is exactly one of {', '.join(mod.base_kinds)}; "
                         f"got keys {sorted(spec)}")
    kind = kinds[0]
    _keys(spec, {kind} | mod.base_extra.get(kind, set()), where)
    value = spec[kind]
    if kind == "tiny" and not isinstance(value, dict):
        raise SuiteError(f"{where}: tiny takes a mapping of model options, got {value!r}")
    if kind in ("path", "mini") and not isinstance(value, str):
        raise SuiteError(f"{where}: {kind} takes a string, got {value!r}")
    try:
        mod.check_base(kind, value, where)
    except ValueError as e:
        raise SuiteError(f"{where}: {e}") from None
    if kind == "mini":
        # The mini world's family file names its bases; its hash goes into every cell's config,
        # so a changed mini world reruns the cells built on it.
        try:
            world, names = mod.mini_family(spec.get("variant", "default"))
        except (ImportError, AttributeError, NotImplementedError) as e:
            raise SuiteError(f"{where}: the mini {modality} world is not available ({e})") from None
        except (ValueError, FileNotFoundError) as e:
            raise SuiteError(f"{where}: {e}") from None
        if value not in names:
            raise SuiteError(f"{where}: unknown model {value!r}: the mini {modality} world has {', '.join(names)}")
        return {**spec, "world": world}
    return dict(spec)


def _transfers(raw: Any, bases: dict[str, Any], where: str) -> list[Transfer]:
    if not isinstance(raw, list):
        raise SuiteError(f"{where}: must be a list of {{source, target, scenario}}, got {raw!r}")
    out = []
    for i, t in enumerate(raw):
        here = f"{where}[{i}]"
        _mapping(t, here)
        _keys(t, TRANSFER_KEYS, here)
        for side in ("source", "target"):
            if side not in t:
                raise SuiteError(f"{here}: missing key {side!r}")
            if t[side] not in bases:
                raise SuiteError(f"{here}.{side}: unknown model {t[side]!r} (declared bases: {', '.join(sorted(bases))})")
        scenario = t.get("scenario", "upscaling")
        if scenario not in SCENARIOS:
            raise SuiteError(f"{here}.scenario: unknown scenario {scenario!r} (known: {', '.join(SCENARIOS)})")
        out.append(Transfer(t["source"], t["target"], scenario))
    return out


def _alpha(value: Any, where: str) -> float:
    if not finite_number(value) or value < 0:
        raise SuiteError(f"{where}: alpha must be a finite number >= 0, got {value!r}")
    return float(value)


def _options(options: dict[str, Any], where: str) -> None:
    for key, value in options.items():
        if key not in OPTION_RULES or value is None:
            continue
        types, bound, inclusive = OPTION_RULES[key]
        kind = "an integer" if types == _INT else "a finite number"
        ok = isinstance(value, types) and not isinstance(value, bool) and finite_number(value) \
            and (value >= bound if inclusive else value > bound)
        if not ok:
            raise SuiteError(f"{where}.{key}: must be {kind} {'>=' if inclusive else '>'} {bound:g}, got {value!r}")


def _mapping(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise SuiteError(f"{where}: expected a mapping, got {type(value).__name__}: {value!r}")


def _keys(value: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise SuiteError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
