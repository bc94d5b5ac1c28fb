"""Vision: open_clip image classifiers trained by ``prt_bench.vision.train`` and evaluated by
``prt_bench.vision.eval`` (CLIP_benchmark's metrics); tasks are datasets of the vision
registry; PRT and EFT need one label set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prt_bench import methods as method_table
from prt_bench.suite.modalities import Modality, register


@register
class Vision(Modality):
    name = "vision"
    base_kinds = ("open_clip", "path", "mini", "tiny")
    base_extra = {"mini": {"variant"}}
    hub_kinds = ("open_clip",)
    task_keys = {"dataset", "split", "train_dataset", "train_split", "primary_metric", "batch_size"}
    task_required = "dataset"
    eval_keys = {"batch_size"}
    methods = method_table.METHODS
    default_primary = "acc1,none"
    profile_settings = {"train_batch": 64, "infer_batch": 128, "steps": 5, "warmup": 2}

    loggers = ("open_clip",)

    @property
    def train_keys(self) -> set[str]:
        from prt_bench.vision.train import VisionTrainConfig

        return VisionTrainConfig.keys()

    # --- the suite file
    def check_base(self, kind: str, value: Any, where: str) -> None:
        if kind != "open_clip":
            return
        # MODEL:TAG must be in open_clip's pretrained registry (no download needed to know)
        if not isinstance(value, str) or value.count(":") != 1:
            raise ValueError(f"open_clip base is 'MODEL:TAG' (e.g. 'ViT-B-16:laion2b_s34b_b88k'), got {value!r}")
        import open_clip

        model, tag = value.split(":")
        known = open_clip.list_pretrained()
        if (model, tag) not in known:
            tags = sorted(t for m, t in known if m == model)
            hint = f"known tags for {model}: {', '.join(tags)}" if tags else f"{model!r} is not an open_clip model"
            raise ValueError(f"unknown model {value!r} ({hint})")

    # --- worlds and models the suite builds itself
    mini_world = ("prt_bench.mini.vision", "build_vision_world")

    def build_tiny(self, options: dict[str, Any], out: Path) -> None:
        from prt_bench.vision.bases import new_base, save_base

        base = new_base(options["config"], seed=options.get("seed", 0))
        save_base(base.model, out, base.model_cfg, base.preprocess_cfg, kind="vision-base", tiny=options)

    def resolve_base(self, spec: dict[str, Any], cache: Path | None) -> str | None:
        return spec.get("open_clip")

    # --- what cells train on: the registry finds the files of {"dataset": name, "split": ...}
    def train_data(self, section, task: str) -> tuple[str, Any]:
        spec = section.tasks[task]
        dataset = spec.get("train_dataset", spec["dataset"])
        return dataset, {"dataset": dataset, "split": spec.get("train_split", "train")}

    # --- checks that need files: label sets first (known from the registry without data), then the data
    def check_files(self, suite, section, resolved: dict[str, str] | None, world: dict[str, str] | None,
                    cache: Path | None = None) -> None:
        if resolved is not None:
            return
        where = f"{suite.path}: vision"
        for name, task in section.tasks.items():
            train_name = task.get("train_dataset", task["dataset"])
            if _classnames(train_name, where, name) != _classnames(task["dataset"], where, name):
                raise ValueError(f"{where}.tasks.{name}: the reward is trained on {train_name!r} and evaluated on "
                                 f"{task['dataset']!r}, whose label sets differ; PRT needs one label set")
            for dataset, split in ((task["dataset"], task.get("split", "test")),
                                   (train_name, task.get("train_split", "train"))):
                require_dataset(dataset, split, where, name)

    # --- the work of a cell
    def train(self, method: str, base: str, data: Any, out: Path, *, seed: int, alpha: float,
              options: dict[str, Any]) -> None:
        from prt_bench.vision.train import train_vision

        train_vision(method, base, data["dataset"], out, split=data.get("split", "train"), alpha=alpha, seed=seed,
                     progress=False, **options)

    def evaluate(self, method: str, paths: dict[str, str], task: dict[str, Any], options: dict[str, Any], *,
                 lam: float, seed: int) -> dict[str, Any]:
        from prt_bench.vision.eval import eval_vision

        kind = method_table.COMBINATION[method]
        kwargs: dict[str, Any] = {k: v for k, v in {**options, **task}.items() if k == "batch_size"}
        if kind in ("prt", "reward"):
            kwargs.update(reward=paths["reward"], lam=lam)
        if kind == "eft":
            kwargs.update(ft=paths["ft"], pt=paths["source"])
        target = paths["model"] if kind == "ft" else paths["target"]
        out = eval_vision(kind, target, task["dataset"], split=task.get("split", "test"), progress=False,
                          keep_samples=True, **kwargs)
        header = {"modality": "vision", "dataset": out["config"]["dataset"], "split": out["config"]["split"],
                  "classes": out["config"]["classes"]}
        if "head" in out:
            header["head"] = out["head"]
        samples = {"header": header, "rows": out["samples"]}
        return self.rescore(header, out["samples"], task), samples

    def rescore(self, header: dict[str, Any], rows: list[dict[str, Any]], task: dict[str, Any]) -> dict[str, Any]:
        from prt_bench.vision.eval import metrics

        return {**{f"{k},none": v for k, v in metrics(rows, header["classes"]).items()}, "n_samples": len(rows)}

    def item_scores(self, header: dict[str, Any], rows: list[dict[str, Any]], metric: str) -> dict[str, float]:
        from prt_bench.vision.eval import item_scores

        return item_scores(rows, metric.partition(",")[0], header["classes"])

    # --- cost
    def profile(self, bases: dict[str, Any] | None, device: str, settings: dict[str, Any]) -> dict[str, Any]:
        from prt_bench.vision.profile import profile_vision

        if bases is None:
            return profile_vision(device=device, progress=False, **settings)
        first, *more = bases["targets"]
        return profile_vision(bases["source"], first, targets=tuple(more), device=device, progress=False, **settings)


def _classnames(dataset: str, where: str, task: str) -> list[str]:
    from prt_bench.vision.datasets import REGISTRY, get_dataset

    if dataset in REGISTRY:
        return list(REGISTRY[dataset].classnames)
    try:
        return list(get_dataset(dataset, "test").classnames)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{where}.tasks.{task}: unknown dataset {dataset!r}: {e}") from None
    except (FileNotFoundError, OSError) as e:
        raise ValueError(f"{where}.tasks.{task}: missing data for {dataset!r}: {e}") from None


def require_dataset(dataset: str, split: str, where: str, task: str) -> None:
    from prt_bench.vision.datasets import get_dataset

    try:
        n = len(get_dataset(dataset, split))
    except (FileNotFoundError, OSError) as e:
        raise ValueError(f"{where}.tasks.{task}: missing data for {dataset!r} ({split}): {e}") from None
    except (KeyError, ValueError) as e:
        raise ValueError(f"{where}.tasks.{task}: unknown dataset or split {dataset!r} ({split}): {e}") from None
    if n == 0:
        raise ValueError(f"{where}.tasks.{task}: the split {split!r} of {dataset!r} holds no images")
