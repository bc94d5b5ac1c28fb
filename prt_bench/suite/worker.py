"""`python -m prt_bench.suite.worker JOB.json`: run one cell in its own process (one GPU each,
chosen by the runner through CUDA_VISIBLE_DEVICES) and store its record."""

from __future__ import annotations

import sys
from pathlib import Path

from prt_bench.io import read_json
from prt_bench.suite.execute import run_job
from prt_bench.suite.store import write_cell


def main(argv: list[str]) -> int:
    job = read_json(argv[0])
    record = run_job(job)
    write_cell(Path(job["results"]), record)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
