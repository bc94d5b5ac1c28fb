"""The modality contract: everything the suite core needs to know about one kind of model.

The suite core (``schema``, ``plan``, ``store``, ``runner``, ``execute``, ``profile``) names no
modality: it looks a section's modality up here and calls it.  A modality is one file in this
folder that subclasses ``Modality`` and registers itself with ``@register``, the way lm-eval
registers its models; ``lm`` and ``vision`` are the two there are.  A third one is a third file.

What a modality provides, in the order a run needs it:

- what its suite section may say: base kinds, task/train/eval keys (the train keys come from
  its recipe's config dataclass), the methods it defines, extra checks (``check_section``);
- its world: the mini family (``mini_family``, ``build_world``), tiny models (``build_tiny``);
- what the cells train on (``train_data``, ``resolve_data``);
- the checks that need files, before any training (``check_files``);
- the work of a cell: ``train`` a checkpoint, ``evaluate`` a method into metrics;
- the cost profile of one source -> target pair (``profile``).

Importing this package is light: the modality files import their libraries (torch, lm-eval,
open_clip) inside the methods that use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from prt_bench.io import REPO_ROOT

REGISTRY: dict[str, "Modality"] = {}


def register(cls: type["Modality"]) -> type["Modality"]:
    """Class decorator: one instance of the modality under its ``name``."""
    if cls.name in REGISTRY:
        raise ValueError(f"modality {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls()
    return cls


def get(name: str) -> "Modality":
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown modality {name!r} (known: {', '.join(REGISTRY)})") from None


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def cache_dir(cache: Path | None) -> Path:
    """Where built models and converted data go: the run's ``--cache``, else the repository's ``.cache/``."""
    return Path(cache) if cache else REPO_ROOT / ".cache"


def repo_path(p: str) -> Path:
    """Relative paths in suite files are relative to the repository root."""
    path = Path(p).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


class Modality:
    """The contract (see the module's docstring); defaults are what most modalities want."""

    name: ClassVar[str]
    base_kinds: ClassVar[tuple[str, ...]]               # a base spec is exactly one of these keys
    base_extra: ClassVar[dict[str, set[str]]] = {}      # further keys a kind allows (e.g. hf: revision)
    hub_kinds: ClassVar[tuple[str, ...]] = ()           # base/data kinds that may reach a model hub
    task_keys: ClassVar[set[str]]
    task_required: ClassVar[str]                        # the key every task must have
    eval_keys: ClassVar[set[str]]
    methods: ClassVar[tuple[str, ...]]                  # the suite methods (prt_bench.methods) it defines
    merges: ClassVar[bool] = False                      # whether its sections may hold `merges:` (merge_* cells)
    eft_strength: ClassVar[bool] = False                # whether EFT takes a strength (`lam_sweep.methods: [eft]`)
    default_primary: ClassVar[str]                      # the headline metric when a task names none
    profile_settings: ClassVar[dict[str, Any]]          # the runner's profile: seconds on a CPU

    @property
    def train_keys(self) -> set[str]:
        """The training options a suite may set: the fields of the recipe's config."""
        raise NotImplementedError

    loggers: ClassVar[tuple[str, ...]] = ()             # its libraries' loggers, silenced while cells run

    def quiet(self) -> None:
        """Silence the modality's libraries (the runner shows its own progress)."""
        import logging

        for name in self.loggers:
            logging.getLogger(name).setLevel(logging.ERROR)

    # --- the suite file
    def check_base(self, kind: str, value: Any, where: str) -> None:
        """Refuse a base the modality cannot load (raise ValueError with the reason)."""

    def check_section(self, train: dict[str, Any], tasks: dict[str, dict[str, Any]], where: str) -> None:
        """Checks of a whole section beyond keys and types (raise ValueError)."""

    # --- worlds and models the suite builds itself
    # (module, builder) of the mini world: the module has load_family(variant), world_hash(family)
    # and the builder(cache_root=, variant=, progress=, only=) -> base name -> folder
    mini_world: ClassVar[tuple[str, str] | None] = None

    def _mini(self):
        import importlib

        if self.mini_world is None:
            raise NotImplementedError(f"the {self.name} modality has no mini world")
        return importlib.import_module(self.mini_world[0])

    def mini_family(self, variant: str) -> tuple[str, list[str]]:
        """(world hash, base names) of the mini world, read without building it."""
        module = self._mini()
        family = module.load_family(variant)
        return module.world_hash(family), list(family["bases"])

    def build_world(self, cache: Path | None, variant: str, progress: bool, only: list[str] | None) -> dict[str, str]:
        """Build (or find cached) the mini world under ``cache/mini/<modality>``: base name ->
        folder, and whatever else its cells need under other keys (e.g. training data)."""
        build = getattr(self._mini(), self.mini_world[1])
        world = build(cache_root=cache / "mini" / self.name if cache else None, variant=variant, progress=progress,
                      only=only)
        return {k: str(v) for k, v in world.items()}

    def build_tiny(self, options: dict[str, Any], out: Path) -> None:
        """A randomly initialised tiny model written to ``out`` (for smoke suites)."""
        raise NotImplementedError(f"the {self.name} modality has no tiny models")

    def resolve_base(self, spec: dict[str, Any], cache: Path | None) -> str | None:
        """What the recipes load for a base of a kind of its own (a hub id, a converted file);
        None for the kinds every modality shares (path, mini, tiny)."""
        return None

    # --- what cells train on
    def train_data(self, section, task: str) -> tuple[str, Any]:
        """(name, spec) of what a task's training cells train on; tasks sharing it share the cells."""
        raise NotImplementedError

    def resolve_data(self, data: Any, world: dict[str, str] | None, cache: Path | None) -> Any:
        """A training-data spec -> what the training recipe takes."""
        return data

    def job_env(self, world: dict[str, str] | None, cache: Path | None) -> dict[str, str]:
        """Environment variables a cell's process needs (e.g. where task files find the world's data,
        where work shared between cells is cached; ``cache``: the run's ``--cache``)."""
        return {}

    # --- checks that need files
    def check_files(self, suite, section, resolved: dict[str, str] | None, world: dict[str, str] | None,
                    cache: Path | None = None) -> None:
        """Raise ValueError for the first problem; called before the bases are built (``resolved``
        None) and after (base name -> what the recipes load)."""

    # --- the work of a cell
    def train(self, method: str, base: str, data: Any, out: Path, *, seed: int, alpha: float,
              options: dict[str, Any]) -> None:
        raise NotImplementedError

    def evaluate(self, method: str, paths: dict[str, str], task: dict[str, Any], options: dict[str, Any], *,
                 lam: float, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """(metrics, samples) of one evaluation cell: ``{"<metric>,<filter>": value, ...,
        "n_samples": n}`` and its per-sample records ``{"header": {...}, "rows": [...]}``
        (``prt_bench.suite.samples``), from which ``rescore`` gives every metric back exactly."""
        raise NotImplementedError

    def rescore(self, header: dict[str, Any], rows: list[dict[str, Any]], task: dict[str, Any]) -> dict[str, Any]:
        """The metrics of a cell recomputed from its per-sample records (``task``: its task config)."""
        raise NotImplementedError

    def item_scores(self, header: dict[str, Any], rows: list[dict[str, Any]], metric: str) -> dict[str, float]:
        """Test item id -> that item's value of ``metric``, whose mean over the items is the
        metric: what paired comparisons of two cells on the same items use."""
        raise NotImplementedError

    def sample_metrics(self, header: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
        """Metrics ``item_scores`` gives from the rows beyond those the cell's results hold (the
        report shows them beside the others)."""
        return []

    # --- cost
    def profile(self, bases: dict[str, Any] | None, device: str, settings: dict[str, Any]) -> dict[str, Any]:
        """A profile record (``prt-bench/profile/1``) of FT vs PRT vs EFT on ``bases`` (``source``:
        a folder, ``targets``: the folders of its targets, first one first), or on small models
        built on the spot when ``bases`` is None."""
        raise NotImplementedError


# the modalities of this project (each registers itself)
from prt_bench.suite.modalities import lm, vision  # noqa: E402,F401
