"""Loader for the gsm8k_local tasks: GSM8K from the prt-bench data dir (see prt_bench.data)."""

from prt_bench.real.tasks import gsm8k_dataset  # noqa: F401  (named by the YAMLs' custom_dataset)
