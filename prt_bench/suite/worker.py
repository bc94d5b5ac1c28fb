"""`python -m prt_bench.suite.worker JOB.json RECORD.json`: run one cell in its own process (one
GPU each, chosen by the runner through CUDA_VISIBLE_DEVICES) and write its record to RECORD.json
for the runner to store."""

from __future__ import annotations

import sys

from prt_bench.io import atomic_write_json, read_json
from prt_bench.suite.execute import Job, run_job


def main(argv: list[str]) -> int:
    job = Job.from_dict(read_json(argv[0]))
    atomic_write_json(argv[1], run_job(job))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
