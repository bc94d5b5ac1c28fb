"""Where cells run.  Every executor takes the same typed jobs (``execute.Job``) and reports
each one back through two callbacks, ``started(job, where)`` and ``finished(job, record, why)``
(``record`` None when it failed, ``why`` says how); the runner alone writes records.

- ``InProcess``     one cell after the other in the runner's process;
- ``CpuPool``       ``workers`` cells at once in spawned processes, each on its share of the cores;
- ``GpuProcesses``  one process per visible GPU (``CUDA_VISIBLE_DEVICES``), one cell each at a time;
- ``RayTasks``      Ray tasks, one GPU each when the cluster has GPUs;
- ``SlurmJobs``     one SLURM job per cell through submitit (its local executor for tests).

A cell that raises fails once and for all (it would fail the same way again); a cell whose
process dies (a killed worker, a lost node, a preempted job) is run again, up to ``retries``
times, on Ray and SLURM -- training is idempotent (a cell writes its checkpoint into a staging
folder renamed into place only when complete), so a retry gives what one run gives.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

from prt_bench.io import atomic_write_json, read_json
from prt_bench.suite.execute import Job, quiet_libraries, run_job

Started = Callable[[Job, str], None]
Finished = Callable[[Job, "dict[str, Any] | None", "str | None"], None]
EXECUTORS = ("local", "ray", "slurm")
RETRIES = 2


def make_executor(executor: str = "local", gpus: list[str] | None = None, workers: int = 1,
                  ray_address: str | None = None, retries: int = RETRIES, slurm: dict[str, Any] | None = None,
                  slurm_folder: str | Path | None = None, gpus_per_cell: int = 1):
    """``executor`` local: the GPUs given (None: every visible one), else ``workers`` CPU processes
    (1: this process); ray: Ray tasks; slurm: SLURM jobs with submitit parameters ``slurm``
    (``cluster=local`` runs them as local processes), their files in ``slurm_folder``.
    ``gpus_per_cell``: local GPUs go to cells in groups of that many (multi-process training)."""
    if retries < 0:
        raise ValueError(f"retries must be at least 0, got {retries}")
    if executor == "ray":
        return RayTasks(ray_address, retries)
    if executor == "slurm":
        return SlurmJobs(slurm_folder or Path(tempfile.gettempdir()) / "prt-bench-slurm", slurm or {}, retries)
    if executor != "local":
        raise ValueError(f"unknown executor {executor!r} ({' or '.join(EXECUTORS)})")
    gpus = visible_gpus() if gpus is None else gpus
    if gpus:
        if gpus_per_cell > len(gpus):
            raise ValueError(f"{gpus_per_cell} processes per training cell need as many GPUs; {len(gpus)} visible")
        return GpuProcesses([",".join(gpus[i:i + gpus_per_cell])
                             for i in range(0, len(gpus) - gpus_per_cell + 1, gpus_per_cell)])
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return CpuPool(workers) if workers > 1 else InProcess()


def visible_gpus() -> list[str]:
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def run_logged(job: Job) -> tuple[dict[str, Any] | None, str | None]:
    """One cell, what the libraries print going to the cell's log: (record, None) or (None, why)."""
    import socket

    log = job.log
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as f, contextlib.redirect_stderr(f), contextlib.redirect_stdout(f):
        print(f"# cell {job.cell_id} ({job.cell.label}): pid {os.getpid()} on {socket.gethostname()}", flush=True)
        try:
            return run_job(job), None
        except Exception as e:  # noqa: BLE001 - one failed cell must not stop the matrix
            traceback.print_exc(file=f)
            return None, f"{type(e).__name__}: {e} (log: {log})"


class InProcess:
    """Cells one after the other in this process."""

    def run(self, jobs: list[Job], started: Started, finished: Finished) -> None:
        for job in jobs:
            started(job, "")
            finished(job, *run_logged(job))


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when the process that started it dies, however it
    dies (SIGKILL included): a killed runner must not leave workers training under PID 1."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):  # not Linux: the runner's SIGTERM handler still ends the pool
        return
    if os.getppid() != parent:  # the parent died before the line above (we were reparented)
        os._exit(1)


def _pool_start(threads: int, runner: int) -> None:
    """Start-up of a CPU pool worker: dies with the runner, its share of the cores, no GPU."""
    _die_with_parent(runner)
    os.environ["PRT_BENCH_THREADS"] = str(threads)
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    torch.set_num_threads(threads)


def _pool_job(job: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    quiet_libraries()
    return run_logged(Job.from_dict(job))


class CpuPool:
    """Cells ``workers`` at a time on the CPU, in worker processes that each use an equal share of
    the cores (one thread each on a 2-core machine with 2 workers).  Small models gain little
    from a second thread, so whole cells are spread over the cores."""

    def __init__(self, workers: int):
        self.workers = workers

    def run(self, jobs: list[Job], started: Started, finished: Finished) -> None:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        if not jobs:
            return
        threads = int(os.environ.get("PRT_BENCH_THREADS") or max(1, (os.cpu_count() or 1) // self.workers))
        waiting = list(jobs)
        pending: dict[Any, Job] = {}
        pool = ProcessPoolExecutor(min(self.workers, len(jobs)), mp_context=mp.get_context("spawn"),
                                   initializer=_pool_start, initargs=(threads, os.getpid()))

        def submit() -> None:  # `workers` cells in flight, so the display shows the running ones
            while waiting and len(pending) < self.workers:
                job = waiting.pop(0)
                pending[pool.submit(_pool_job, job.to_dict())] = job
                started(job, "cpu")

        try:
            submit()
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for fut in done:
                    job = pending.pop(fut)
                    try:
                        record, why = fut.result()
                    except Exception as e:  # noqa: BLE001 - a worker that died takes only its cell
                        record, why = None, f"worker failed: {type(e).__name__}: {e}"
                    finished(job, record, why)
                submit()
        except BaseException:  # SIGTERM (SystemExit), Ctrl-C: stop the cells now instead of waiting for them
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()


class GpuProcesses:
    """One cell per GPU (or group of GPUs, ``"0,1"``) at a time, each in its own process
    (``python -m prt_bench.suite.worker``) that sees only its GPUs, dies with the runner and
    writes the record to a file this process reads back."""

    def __init__(self, gpus: list[str]):
        self.gpus = gpus

    def run(self, jobs: list[Job], started: Started, finished: Finished) -> None:
        import queue

        free: queue.Queue[str] = queue.Queue()
        for g in self.gpus:
            free.put(g)
        job_dir = Path(tempfile.mkdtemp(prefix="prt-bench-jobs-"))
        runner = os.getpid()

        def one(job: Job):
            gpu = free.get()
            try:
                started(job, f"GPU {gpu}")
                path, record = job_dir / f"{job.cell_id}.json", job_dir / f"{job.cell_id}.record.json"
                atomic_write_json(path, job.to_dict())
                env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
                job.log.parent.mkdir(parents=True, exist_ok=True)
                with open(job.log, "w", encoding="utf-8") as log:
                    proc = subprocess.run([sys.executable, "-m", "prt_bench.suite.worker", str(path), str(record)],
                                          env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                                          preexec_fn=lambda: _die_with_parent(runner))
                return job, proc, record
            finally:
                free.put(gpu)

        with ThreadPoolExecutor(max_workers=len(self.gpus)) as pool:
            for fut in as_completed([pool.submit(one, job) for job in jobs]):
                job, proc, record = fut.result()
                if proc.returncode == 0 and record.is_file():
                    finished(job, read_json(record), None)
                else:
                    last = (job.log.read_text(encoding="utf-8").strip().splitlines() or ["no output"])[-1]
                    finished(job, None, f"{last} (exit {proc.returncode}, log: {job.log})")


class RayTasks:
    """The same jobs as Ray tasks, one GPU each when the cluster has GPUs; a task whose worker
    died is run again up to ``retries`` times (Ray's ``max_retries``; exceptions are not retried)."""

    def __init__(self, address: str | None = None, retries: int = RETRIES):
        self.address = address
        self.retries = retries

    def run(self, jobs: list[Job], started: Started, finished: Finished) -> None:
        import ray

        if not ray.is_initialized():
            # the settings that decide where data and models come from travel with the tasks
            passed = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "PRT_BENCH_DATA", "HF_HOME", "TOKENIZERS_PARALLELISM")
            runtime_env = {"env_vars": {k: os.environ[k] for k in passed if k in os.environ}}
            if self.address:
                ray.init(address=self.address, log_to_driver=False, runtime_env=runtime_env)
            else:
                ray.init(include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)
        gpus = ray.cluster_resources().get("GPU", 0)
        remote = ray.remote(num_gpus=1 if gpus else 0, max_retries=self.retries, retry_exceptions=False)(_pool_job)
        pending = {}
        for job in jobs:
            pending[remote.remote(job.to_dict())] = job
            started(job, "ray")
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                record, why = ray.get(ready[0])
            except Exception as e:  # noqa: BLE001 - a task lost more often than retried takes only its cell
                record, why = None, f"{type(e).__name__}: {e}".splitlines()[0]
            finished(job, record, why)


class SlurmJobs:
    """One SLURM job per cell, submitted through submitit and waited for here.

    ``parameters`` are submitit's (``AutoExecutor.update_parameters``): the portable ones
    (``timeout_min``, ``gpus_per_node``, ``cpus_per_task``, ``mem_gb``, ``nodes``) and SLURM's own
    with their ``slurm_`` prefix (``slurm_partition``, ``slurm_account``, ``slurm_qos``, ...);
    ``cluster`` picks submitit's executor (``slurm``, or ``local`` / ``debug`` to run the jobs on
    this machine).  A job that ended without a result (killed, node lost, preempted past
    submitit's own requeues) is submitted again, up to ``retries`` times; one that raised is not.
    Jobs' own files (submitit's pickles and stdout/stderr) go to ``folder``; the cell's log is the
    runner's, as for every executor."""

    def __init__(self, folder: str | Path, parameters: dict[str, Any], retries: int = RETRIES):
        self.folder = Path(folder)
        self.parameters = dict(parameters)
        self.retries = retries
        self.poll_s = 0.5
        self.executor()  # a wrong parameter or a missing sbatch is said before any cell runs

    def executor(self):
        import shutil

        import submitit

        params = dict(self.parameters)
        cluster = params.pop("cluster", "slurm")
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise ValueError("--executor slurm: no sbatch on this machine (run from a SLURM login node, or give "
                             "cluster=local to run the jobs here)")
        executor = submitit.AutoExecutor(folder=self.folder, cluster=cluster)
        params.setdefault("name", "prt-bench")
        executor.update_parameters(**params)  # submitit refuses a parameter it does not know
        return executor

    def run(self, jobs: list[Job], started: Started, finished: Finished) -> None:
        import time

        import submitit

        if not jobs:
            return
        executor = self.executor()
        pending: dict[Any, tuple[Job, int]] = {}

        def submit(job: Job, attempt: int) -> None:
            handle = executor.submit(_pool_job, job.to_dict())
            pending[handle] = (job, attempt)
            started(job, f"slurm {handle.job_id}" + (f", attempt {attempt + 1}" if attempt else ""))

        try:
            for job in jobs:
                submit(job, 0)
            while pending:
                done = [h for h in pending if h.done()]
                if not done:
                    time.sleep(self.poll_s)
                    continue
                for handle in done:
                    job, attempt = pending.pop(handle)
                    try:
                        record, why = handle.result()
                    except submitit.core.utils.UncompletedJobError as e:  # died without a result
                        if attempt < self.retries:
                            submit(job, attempt + 1)
                            continue
                        record, why = None, f"job {handle.job_id} ended without a result {attempt + 1} times: " \
                                            f"{str(e).splitlines()[0]}"
                    except Exception as e:  # noqa: BLE001 - submitit's own failure takes only its cell
                        record, why = None, f"job {handle.job_id}: {type(e).__name__}: {str(e).splitlines()[0]}"
                    finished(job, record, why)
        except BaseException:  # SIGTERM, Ctrl-C: cancel what is queued or running
            for handle in pending:
                with contextlib.suppress(Exception):
                    handle.cancel(check=False)
            raise
