"""prt-bench: a benchmark suite and evaluation harness for Portable Reward Tuning (PRT).

Importing the package registers the lm-eval models ``prt`` and ``eft``
(``prt_bench.lm.lm_eval_models``), so ``lm_eval.simple_evaluate(model="prt", ...)`` works after
``import prt_bench``.  They are registered as lazy placeholders, as lm-eval registers its own
models, so that importing prt-bench (and ``prt-bench --help``) does not import torch.
"""

__version__ = "0.1.0"

LM_EVAL_MODELS = {"prt": "prt_bench.lm.lm_eval_models:PRTLM", "eft": "prt_bench.lm.lm_eval_models:EFTLM"}


def _register_lm_eval_models() -> None:
    try:
        import lm_eval.models  # noqa: F401  (lm-eval's own lazy entries first: its registry skips them once non-empty)
        from lm_eval.api.registry import model_registry
    except ImportError:  # the math and vision parts work without lm-eval
        return
    for name, target in LM_EVAL_MODELS.items():
        if name not in model_registry:
            model_registry.register(name, target=target)


_register_lm_eval_models()
