"""Vision datasets: ``get_dataset(name, split, data_dir)`` and the registry of specs."""

from prt_bench.vision.datasets.registry import PAPER_DATASETS, REGISTRY, ImageClassification, get_dataset, get_spec

__all__ = ["PAPER_DATASETS", "REGISTRY", "ImageClassification", "get_dataset", "get_spec"]
