"""Loader and scoring for ifeval_local: lm-eval's own IFEval scoring, with the IFEval prompts
from the prt-bench data dir and nltk's Punkt tables provided offline (before lm-eval's
instruction checks are imported, since that import would otherwise try to download them)."""

from prt_bench.real.tasks import ensure_punkt_tab, ifeval_dataset  # noqa: F401

ensure_punkt_tab()

from lm_eval.tasks.ifeval.utils import agg_inst_level_acc, process_results  # noqa: E402,F401
