"""Execute a sweep (:mod:`core.sweep.spec`) on dask.distributed: one task per run.

Where the runs go (:class:`ClusterOptions`):

* default — an embedded ``LocalCluster``: ``workers`` (default: all cores) worker
  *processes* with one thread each, started with the ``spawn`` method (JAX is not
  fork-safe), XLA limited to one CPU thread per worker so workers do not oversubscribe;
* ``scheduler="tcp://host:port"`` — an existing cluster (its workers need this package);
* ``jobqueue="slurm" | "pbs"`` — batch jobs through dask-jobqueue (the optional extra
  ``cluster``): ``jobs`` jobs of ``cores`` worker processes each (one thread per worker),
  with ``queue``, ``account``, ``walltime``, ``memory`` passed to the job script.

Restartability and exactly-once:

* a run whose session already loads with a final report (and the same config) is skipped
  without submitting anything;
* sessions are saved atomically by :func:`core.runner.run_config`; ``summary.csv`` and
  ``settings.csv`` are rewritten atomically after every finished run; the atlas
  (``atlas.csv``, ``atlas.npz``: :mod:`core.sweep.atlas`) when the sweep ends or is
  interrupted, from every finished run in grid order (so it does not depend on the order
  in which runs finished);
* a worker that dies (killed, out of memory, node lost) loses only its run in flight:
  the scheduler resubmits it elsewhere (up to ``distributed.scheduler.allowed-failures``
  times, default 3), and a run that raises is retried ``retries`` times;
* each run holds an exclusive ``flock`` on ``OUT/.locks/<run>`` while it executes, and
  re-checks for a finished session after taking it: a zombie execution of a cancelled
  task (dask cannot stop a running thread) and a resubmission never run concurrently
  or twice.

Runs of the same shapes are *not* batched with ``jax.vmap`` within a worker (each run is
one :func:`core.runner.run_config` call, so its session is exactly that of ``explorer run``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.sweep.atlas import AtlasEntry, EndPoint, end_point, write_atlas
from core.sweep.results import (
    SETTINGS_CSV,
    SUMMARY_CSV,
    csv_text,
    finished_session,
    run_columns,
    run_row,
    setting_columns,
    summarize,
    write_text_atomic,
)
from core.sweep.spec import Sweep, SweepError, SweepRun, load_sweep

LOCKS_DIR = ".locks"
#: Key of a worker's row that carries the run's end point to the driver (not a CSV column).
END_POINT = "end_point"
JOBQUEUES = ("slurm", "pbs")
#: XLA on the CPU: one intra-op thread per worker (workers = cores already fills the box).
WORKER_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


@dataclass(frozen=True)
class ClusterOptions:
    """Where to run (see the module docstring)."""

    scheduler: str | None = None
    jobqueue: str | None = None
    workers: int | None = None
    queue: str | None = None
    account: str | None = None
    walltime: str | None = None
    cores: int | None = None
    memory: str | None = None
    jobs: int | None = None

    def check(self) -> None:
        """Raise :class:`SweepError` naming the option for inconsistent choices."""
        if self.scheduler and self.jobqueue:
            raise SweepError("sweep", "--scheduler", "cannot be combined with --jobqueue")
        if self.jobqueue is not None and self.jobqueue not in JOBQUEUES:
            msg = f"must be one of {', '.join(JOBQUEUES)}, got {self.jobqueue!r}"
            raise SweepError("sweep", "--jobqueue", msg)
        if self.scheduler is not None and "://" not in self.scheduler:
            msg = f"must be an address like tcp://host:8786, got {self.scheduler!r}"
            raise SweepError("sweep", "--scheduler", msg)
        for name in ("workers", "cores", "jobs"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise SweepError("sweep", f"--{name}", f"must be a positive integer, got {v!r}")
        queue_opts = ("queue", "account", "walltime", "cores", "memory", "jobs")
        if self.jobqueue is None:
            for name in queue_opts:
                if getattr(self, name) is not None:
                    raise SweepError("sweep", f"--{name}", "only used with --jobqueue slurm|pbs")
        if self.scheduler is not None and self.workers is not None:
            raise SweepError("sweep", "--workers", "only used for the embedded local cluster")


@dataclass
class SweepEvent:
    """Progress of a sweep: ``kind`` is "skipped" | "done" | "failed"."""

    kind: str
    run: SweepRun
    row: dict
    done: int
    total: int


@dataclass
class SweepResult:
    """What a sweep left in ``out``: every run's row, the per-setting table, counts, and
    the atlas of distinct critical points."""

    sweep: Sweep
    out: Path
    rows: list[dict]
    settings: list[dict]
    skipped: int = 0
    executed: int = 0
    failed: list[str] = field(default_factory=list)
    atlas: list[AtlasEntry] = field(default_factory=list)


# ----------------------------------------------------------------------------- worker side

_WORKER_READY = False


def _worker_setup() -> None:
    """Once per process: JAX's persistent compilation cache (:mod:`core.cache`, the same
    folder as the app's, so a sweep reuses what earlier runs compiled), then float64."""
    global _WORKER_READY
    if _WORKER_READY:
        return
    from core.cache import enable_compilation_cache

    enable_compilation_cache()
    import core  # noqa: F401  (float64 on)

    _WORKER_READY = True


@contextmanager
def _run_lock(out: Path, name: str):
    """Exclusive advisory lock on ``out/.locks/name`` (released when the process dies)."""
    locks = out / LOCKS_DIR
    locks.mkdir(exist_ok=True)
    with open(locks / name, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def execute_run(run: SweepRun, out: str) -> dict:
    """Run one grid point into ``out/run.name`` unless it is finished; return its row.

    The row (:func:`core.sweep.results.run_row`) carries ``"status"``: "done" (ran now) or
    "skipped" (a finished session was there, e.g. written by an earlier attempt), and
    ``"end_point"``: the run's :class:`core.sweep.atlas.EndPoint` (for the atlas).
    """
    _worker_setup()
    from core.runner import run_config

    out_dir = Path(out)
    folder = out_dir / run.name
    with _run_lock(out_dir, run.name):
        session = finished_session(run, folder)
        status = "skipped"
        if session is None:
            from core.session import load_session

            run_config(run.config, folder)
            session, status = load_session(folder), "done"
        return {**run_row(run, session), "status": status, END_POINT: end_point(run.name, session)}


# ----------------------------------------------------------------------------- clusters


def make_cluster(options: ClusterOptions) -> tuple[Any, Callable[[], None]]:
    """A ``distributed.Client`` for ``options`` and a function that closes what we started."""
    import dask
    from distributed import Client, LocalCluster

    options.check()
    if options.scheduler:
        client = Client(options.scheduler, timeout="30s")
        return client, client.close
    if options.jobqueue:
        cluster = _jobqueue_cluster(options)
        cluster.scale(jobs=options.jobs or 1)
        client = Client(cluster)

        def close() -> None:
            client.close()
            cluster.close()

        return client, close
    n = options.workers or os.cpu_count() or 1
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            env={"XLA_FLAGS": WORKER_XLA_FLAGS},
        )
    client = Client(cluster)

    def close_local() -> None:
        client.close()
        cluster.close()

    return client, close_local


def _jobqueue_cluster(options: ClusterOptions) -> Any:
    """SLURMCluster / PBSCluster with one thread per worker process (not started yet)."""
    try:
        import dask_jobqueue
    except ImportError:
        raise SweepError(
            "sweep",
            "--jobqueue",
            "needs dask-jobqueue: pip install 'landscape-explorer[cluster]'",
        ) from None
    cores = options.cores or 1
    kwargs: dict[str, Any] = {
        "cores": cores,
        "processes": cores,  # one worker process per core, one thread each
        "memory": options.memory or f"{2 * cores}GB",
        "walltime": options.walltime,
        "queue": options.queue,
        "account": options.account,
        "job_script_prologue": [f'export XLA_FLAGS="{WORKER_XLA_FLAGS}"'],
    }
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    cls = dask_jobqueue.SLURMCluster if options.jobqueue == "slurm" else dask_jobqueue.PBSCluster
    return cls(**kwargs)


# ----------------------------------------------------------------------------- driver


def prepare(sweep: Sweep, out: Path) -> tuple[list[SweepRun], dict[str, dict], dict[str, EndPoint]]:
    """(runs still to do, rows and end points of the finished ones); raises before
    anything is written."""
    if out.exists() and not out.is_dir():
        raise SweepError(str(out), None, "exists and is not a folder")
    if not out.exists():  # missing parents are made (as by mkdir -p), unless one is a file
        ancestor = next(a for a in out.parents if a.exists())
        if not ancestor.is_dir():
            raise SweepError(str(out), None, f"{ancestor} is not a folder")
    pending, rows, points = [], {}, {}
    for run in sweep.runs:
        session = finished_session(run, out / run.name)
        if session is None:
            pending.append(run)
        else:
            rows[run.name] = run_row(run, session)
            point = end_point(run.name, session)
            if point is not None:
                points[run.name] = point
    return pending, rows, points


def write_summaries(sweep: Sweep, out: Path, rows: dict[str, dict]) -> tuple[list, list]:
    """Write ``summary.csv`` (one row per run, in grid order; runs not finished: "pending")
    and ``settings.csv`` atomically; return (rows, settings)."""
    ordered = [rows.get(r.name) or run_row(r, None) for r in sweep.runs]
    settings = summarize(ordered, sweep.setting_keys)
    write_text_atomic(out / SUMMARY_CSV, csv_text(ordered, run_columns(sweep.keys)))
    write_text_atomic(out / SETTINGS_CSV, csv_text(settings, setting_columns(sweep.setting_keys)))
    return ordered, settings


def write_sweep_atlas(sweep: Sweep, out: Path, points: dict[str, EndPoint]) -> list[AtlasEntry]:
    """Write ``atlas.csv`` / ``atlas.npz`` (:mod:`core.sweep.atlas`) of the finished runs,
    taken in grid order."""
    return write_atlas(out, [points[r.name] for r in sweep.runs if r.name in points])


def run_sweep(
    sweep: str | Path | Sweep,
    out: str | Path,
    options: ClusterOptions | None = None,
    *,
    client: Any = None,
    retries: int = 1,
    serial: bool = False,
    progress: Callable[[SweepEvent], None] | None = None,
) -> SweepResult:
    """Run every unfinished run of ``sweep`` into ``out``; return the summary.

    Args:
        sweep: a sweep file or an expanded :class:`~core.sweep.Sweep`.
        out: output folder: one session per run, ``summary.csv``, ``settings.csv``, and
            at the end (or on an interrupt) ``atlas.csv`` / ``atlas.npz``.
        options: where to run (default: an embedded LocalCluster on all cores).
        client: an existing ``distributed.Client`` to use instead (not closed).
        retries: extra attempts for a run that raises.
        serial: run everything in this process, one run after the other (no Dask).
        progress: called with a :class:`SweepEvent` after each run.

    Raises:
        SweepError: an invalid sweep or output folder — before anything is written.
        KeyboardInterrupt (and any error of ``progress``): after cancelling the runs not
            yet finished and writing the summaries and the atlas of those that are.
    """
    sw = sweep if isinstance(sweep, Sweep) else load_sweep(sweep)
    options = options or ClusterOptions()
    options.check()
    out_dir = Path(out).absolute()
    pending, rows, points = prepare(sw, out_dir)
    result = SweepResult(sw, out_dir, [], [], skipped=len(rows))
    total = len(sw.runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    for run in sw.runs:
        if run.name in rows and progress is not None:
            progress(SweepEvent("skipped", run, rows[run.name], len(rows), total))

    def record(run: SweepRun, row: dict) -> None:
        status = row.pop("status", "done")
        point = row.pop(END_POINT, None)
        if point is not None:
            points[run.name] = point
        rows[run.name] = row
        if row["outcome"] == "failed" and row.get("error"):
            result.failed.append(run.name)
        elif status == "done":
            result.executed += 1
        else:
            result.skipped += 1
        write_summaries(sw, out_dir, rows)
        if progress is not None:
            kind = "failed" if run.name in result.failed else status
            progress(SweepEvent(kind, run, row, len(rows), total))

    try:
        _execute(pending, out_dir, options, client, retries, serial, record)
    except BaseException:
        write_summaries(sw, out_dir, rows)
        write_sweep_atlas(sw, out_dir, points)
        raise
    result.rows, result.settings = write_summaries(sw, out_dir, rows)
    result.atlas = write_sweep_atlas(sw, out_dir, points)
    return result


def _execute(
    pending: list[SweepRun],
    out_dir: Path,
    options: ClusterOptions,
    client: Any,
    retries: int,
    serial: bool,
    record: Callable[[SweepRun, dict], None],
) -> None:
    """Run ``pending`` (in this process, or on a client / a cluster of ``options``),
    calling ``record`` with each finished run's row; on any exception (an interrupt, an
    error of ``record``) the runs not yet finished are cancelled first."""
    if pending and serial:
        for run in pending:
            try:
                row = execute_run(run, str(out_dir))
            except Exception as e:
                row = run_row(run, None, f"{type(e).__name__}: {e}")
            record(run, row)
    elif pending:
        from distributed import as_completed

        close = None
        if client is None:
            client, close = make_cluster(options)
        tag = uuid.uuid4().hex[:8]
        futures = {
            client.submit(
                execute_run, run, str(out_dir), key=f"sweep-{tag}-{run.name}", retries=retries
            ): run
            for run in pending
        }
        try:
            for fut in as_completed(list(futures)):
                run = futures[fut]
                try:
                    row = fut.result()
                except Exception as e:  # raised in the run, or KilledWorker
                    row = run_row(run, None, f"{type(e).__name__}: {' '.join(str(e).split())}")
                record(run, row)
        except BaseException:
            client.cancel([f for f in futures if not f.done()])
            raise
        finally:
            if close is not None:
                close()
