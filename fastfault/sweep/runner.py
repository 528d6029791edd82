"""Run every point of an experiment: in-process, on a local process pool, or on a Dask cluster.

The unit of work is a :class:`~fastfault.sweep.config.Run` (a point and a replicate). A worker
computes :func:`execute` -- exactly :func:`fastfault.api.run` with the run's arguments -- and the
driving process makes the result durable at once (``DIR/points/P.R.json``, written atomically;
see :mod:`fastfault.sweep.results`). Killing the driver, even with SIGKILL, loses at most the runs
in flight; ``resume=True`` reads the durable runs back and computes only the rest. When every run
is durable the table is assembled, sorted by ``(point, replicate)``, and written atomically to
``DIR/results.parquet``: the same bytes of data whatever the number of workers or the backend.

Backends
--------
``workers=1``
    In this process.
``workers=N`` (default: every usable core)
    A process pool (``fork`` on Linux, ``spawn`` elsewhere). One tiny point runs in this process
    first, so the kernels are compiled once: forked workers inherit them loaded, spawned ones load
    them from numba's on-disk cache instead of compiling them N times.
``scheduler="tcp://HOST:PORT"``
    An existing Dask distributed cluster (``dask scheduler`` / ``dask worker``). Workers need the
    same fastfault installed and, for trace workloads, the trace files at the same paths.
``cluster="local"``
    A ``distributed.LocalCluster`` of ``workers`` single-threaded worker processes.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastfault.errors import InputError
from fastfault.sweep import results as res
from fastfault.sweep.config import Experiment, Run

__all__ = ["SweepInterrupted", "SweepSummary", "default_workers", "execute", "run_sweep", "warm_up"]


def default_workers() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class SweepSummary:
    """What :func:`run_sweep` did.

    Attributes
    ----------
    name : str
        Experiment name.
    out : str
        Output directory.
    results : str
        Path of ``results.parquet``.
    total, computed, resumed : int
        Runs in the experiment, computed now, found durable from an earlier session.
    seconds : float
        Wall time of this session.
    backend : str
        ``serial``, ``processes``, ``dask-local`` or ``dask``.
    workers : int
    rows, columns : int
        Shape of the table.
    """

    name: str
    out: str
    results: str
    total: int
    computed: int
    resumed: int
    seconds: float
    backend: str
    workers: int
    rows: int = 0
    columns: int = 0
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("meta")
        return d

    def line(self) -> str:
        """One human line for the end of a sweep."""
        rate = self.computed / self.seconds if self.seconds > 0 else 0.0
        return (
            f"sweep {self.name}: {self.total} runs ({self.computed} computed, {self.resumed} resumed) "
            f"in {self.seconds:.1f} s on {self.workers} worker{'s' if self.workers != 1 else ''} "
            f"[{self.backend}, {rate:.1f} runs/s] -> {self.results} "
            f"({self.rows} rows x {self.columns} columns)"
        )


class SweepInterrupted(Exception):
    """Raised by :func:`run_sweep` on Ctrl-C after the finished runs were kept.

    Attributes
    ----------
    out : str
    done, total : int
        Durable runs and runs in the experiment.
    """

    def __init__(self, out: str, done: int, total: int):
        super().__init__(f"interrupted with {done} of {total} runs saved in {out}")
        self.out = out
        self.done = done
        self.total = total


# --------------------------------------------------------------------------------------------------
# The work.
# --------------------------------------------------------------------------------------------------


def execute(run: Run) -> dict[str, Any]:
    """Compute one run: :func:`fastfault.api.run` with the run's arguments, as a clean table row.

    Parameters
    ----------
    run : Run

    Returns
    -------
    dict
        ``{"point", "replicate", "row", "seconds", "worker"}`` (``worker``: host and process id).
        ``row`` is ``RunResult.row()`` preceded by ``point``, ``replicate``, ``workload_label`` and
        followed by ``param_<knob>`` for knobs ``row()`` does not report itself (simulator
        extensions, ``folio_orders``).
    """
    from fastfault.api import run as api_run

    t0 = time.perf_counter()
    result = api_run(**run.kwargs())
    row: dict[str, Any] = {
        "point": run.point,
        "replicate": run.replicate,
        "workload_label": run.workload_label,
    }
    row.update(result.row())
    for k, v in run.knobs.items():
        row.setdefault(f"param_{k}", v)
    return {
        "point": run.point,
        "replicate": run.replicate,
        "row": res.clean_row(row),
        "seconds": time.perf_counter() - t0,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }


def _tiny_trace():
    import numpy as np

    from fastfault.trace import Mapping, make_trace

    base = 0x7F0000000000
    npages = 64
    m = Mapping(base, base + npages * 4096, 0, "r--s", "warmup", npages * 4096)
    vpn = np.concatenate([np.arange(npages), np.arange(0, npages, 7)]) + (base >> 12)
    kind = np.zeros(vpn.shape[0], dtype=np.uint8)
    kind[::5] = 1
    return make_trace(vpn, kind, mappings=[m], meta={"name": "warmup"})


def warm_up(experiment: Experiment, limit: int = 4) -> float:
    """Run one tiny point per distinct simulator-extension setting so numba's cache is compiled.

    Returns
    -------
    float
        Seconds spent (about 30 s the first time after the kernels change, under 1 s afterwards).
    """
    from fastfault.api import run as api_run
    from fastfault.sweep.config import KNOBS

    t0 = time.perf_counter()
    trace = _tiny_trace()
    seen: set[str] = set()
    for p in experiment.points:
        sim = {k: v for k, v in p.knobs.items() if KNOBS[k].sim}
        key = json.dumps(sim, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        api_run(trace, **p.knobs)
        if len(seen) >= limit:
            break
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------------
# Backends: each submits runs and waits for some to finish.
# --------------------------------------------------------------------------------------------------


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Serial:
    name = "serial"

    def __init__(self):
        self.workers = 1
        self.capacity = 1

    def submit(self, run: Run):
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(execute(run))
        except Exception as err:  # noqa: BLE001 - handed to the caller like a pool would
            fut.set_exception(err)
        return fut

    def wait(self, futures):
        return set(futures)

    def close(self, cancel: bool = False) -> None:
        pass


class _Processes:
    name = "processes"

    def __init__(self, workers: int):
        import multiprocessing as mp

        self.workers = workers
        self.capacity = 4 * workers
        # fork where there is one (Linux): the workers inherit this process with numba imported and
        # the kernels loaded by the warm-up, so a worker starts computing at once instead of spending
        # ~0.5 s importing numba and loading the cache (the cost that capped a short sweep's speed-up).
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        self.pool = cf.ProcessPoolExecutor(
            workers,
            mp_context=mp.get_context(method),
            initializer=_ignore_sigint,
        )
        self._started = 0

    def submit(self, run: Run):
        if self._started < self.workers:
            # Workers are spawned on submit; spawn them with SIGINT ignored so a Ctrl-C reaches only
            # this process (which then stops them) and never prints a traceback from a worker.
            old = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                fut = self.pool.submit(execute, run)
            finally:
                signal.signal(signal.SIGINT, old)
            self._started += 1
            return fut
        return self.pool.submit(execute, run)

    def wait(self, futures):
        done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
        return done

    def close(self, cancel: bool = False) -> None:
        if not cancel:
            self.pool.shutdown(wait=True)
            return
        procs = list(getattr(self.pool, "_processes", {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)


class _Dask:
    def __init__(self, scheduler: str | None, cluster: str | None, workers: int):
        import logging

        from distributed import Client, LocalCluster

        self.cluster = None
        if cluster is not None:
            self.name = "dask-local"
            self.cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            self.client = Client(self.cluster)
        else:
            self.name = "dask"
            try:
                # FASTFAULT_DASK_TIMEOUT: seconds to wait for the scheduler (default 15)
                timeout = float(os.environ.get("FASTFAULT_DASK_TIMEOUT", "15"))
                self.client = Client(scheduler, timeout=f"{timeout}s")
            except (OSError, TimeoutError) as err:
                msg = f"--scheduler {scheduler}: cannot connect to a Dask scheduler ({err})"
                raise InputError(msg) from None
        nthreads = sum(self.client.nthreads().values())
        if nthreads == 0:
            self.client.wait_for_workers(1, timeout=60)
            nthreads = sum(self.client.nthreads().values())
        self.workers = max(nthreads, 1)
        self.capacity = 4 * self.workers

    def submit(self, run: Run):
        return self.client.submit(execute, run, pure=False)

    def wait(self, futures):
        from distributed import wait

        done, _ = wait(list(futures), return_when="FIRST_COMPLETED")
        return done

    def close(self, cancel: bool = False) -> None:
        try:
            if cancel:
                self.client.cancel(
                    list(self.client.futures.values()) if hasattr(self.client, "futures") else [],
                )
            else:  # report every worker that joined during the sweep
                self.workers = max(self.workers, sum(self.client.nthreads().values()))
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        try:
            self.client.close(timeout=10)
        finally:
            if self.cluster is not None:
                self.cluster.close(timeout=10)


# --------------------------------------------------------------------------------------------------
# The output directory.
# --------------------------------------------------------------------------------------------------

_OWNED = ("points", "figures", "results.parquet", "meta.json", "plan.json", "experiment.toml")


def _check_out(exp: Experiment, out: Path, resume: bool, force: bool) -> str:
    """Decide what to do with ``out`` without writing: ``"new"``, ``"resume"`` or ``"wipe"``."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: --out exists and is not a directory")
    plan_file = out / "plan.json"
    if plan_file.is_file():
        try:
            old = json.loads(plan_file.read_text())
            old_sha = old["plan_sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            old, old_sha = {}, None
        if old_sha != exp.plan_sha256:
            if force:
                return "wipe"
            what = f"experiment {old.get('name', '?')!r}, plan {str(old_sha)[:12]}"
            hint = "; --resume only continues the same experiment" if resume else ""
            raise InputError(
                f"{out}: holds a different experiment ({what}; this is {exp.name!r}, plan "
                f"{exp.plan_sha256[:12]}); use another --out or --force to overwrite it{hint}"
            )
        if force:
            return "wipe"
        if not resume:
            done = len(res.read_points(out / "points")) if (out / "points").is_dir() else 0
            raise InputError(
                f"{out}: already holds this experiment ({done} of {len(exp.runs())} runs done); "
                "use --resume to finish it or --force to start over"
            )
        return "resume"
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError(f"{out}: is not empty and holds no sweep; use another --out or --force")
    return "wipe" if out.is_dir() else "new"


def _wipe(out: Path) -> None:
    for name in _OWNED:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _backend_info(backend) -> dict[str, Any]:
    info: dict[str, Any] = {"name": backend.name, "workers": backend.workers}
    if isinstance(backend, _Dask):
        info["scheduler"] = backend.client.scheduler.address
    return info


# --------------------------------------------------------------------------------------------------
# The driver.
# --------------------------------------------------------------------------------------------------


def run_sweep(
    experiment: Experiment,
    out: str | os.PathLike[str],
    *,
    workers: int | None = None,
    resume: bool = False,
    force: bool = False,
    scheduler: str | None = None,
    cluster: str | None = None,
    progress: bool = True,
    warm: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> SweepSummary:
    """Run every point of ``experiment`` and write ``out/results.parquet`` and ``out/meta.json``.

    Parameters
    ----------
    experiment : Experiment
        From :func:`~fastfault.sweep.config.load_experiment`.
    out : path-like
        Output directory (created).
    workers : int, optional
        Worker processes (default: every usable core; ``1`` runs in this process). With
        ``cluster="local"``, the number of Dask workers; ignored with ``scheduler``.
    resume : bool
        Continue a sweep of the same experiment in ``out``: durable runs are kept, not recomputed.
    force : bool
        Overwrite ``out`` even if it holds another experiment.
    scheduler : str, optional
        Address of a Dask scheduler (``tcp://HOST:PORT``).
    cluster : {"local"}, optional
        Start a ``distributed.LocalCluster``.
    progress : bool
        Show a tqdm progress bar on stderr.
    warm : bool
        Compile the kernels in this process (one tiny point) before starting workers.
    on_result : callable, optional
        Called with each durable record (tests use it to interrupt a sweep).

    Returns
    -------
    SweepSummary

    Raises
    ------
    InputError
        ``out`` holds another experiment, the backend cannot be reached, or a run rejects its input.
    SweepInterrupted
        On Ctrl-C; finished runs stay durable and ``resume=True`` completes the sweep.
    """
    from tqdm import tqdm

    if scheduler is not None and cluster is not None:
        raise InputError("--scheduler and --cluster exclude each other")
    if cluster is not None and cluster != "local":
        raise InputError(f"--cluster: {cluster!r} is not supported (only 'local')")
    if scheduler is not None and "://" not in scheduler:
        raise InputError(f"--scheduler: {scheduler!r} is not an address like tcp://HOST:PORT")
    if workers is not None and workers < 1:
        raise InputError(f"--workers: {workers} is not a positive number")
    out = Path(out)
    action = _check_out(experiment, out, resume, force)
    runs = experiment.runs()
    total = len(runs)
    done = res.read_points(out / "points") if action == "resume" else {}
    planned = {r.key for r in runs}
    done = {k: v for k, v in done.items() if k in planned}
    todo = [r for r in runs if r.key not in done]
    n_workers = workers or default_workers()

    started = res.now()
    t0 = time.perf_counter()
    # Compile (or load) the kernels here first: spawned pool workers, and Dask workers on this host,
    # then load them from numba's on-disk cache instead of each compiling them. A remote scheduler is
    # contacted before that, so that an unreachable one is reported at once.
    backend: Any = None
    if scheduler is not None and todo:
        backend = _Dask(scheduler, None, n_workers)
    try:
        warm_seconds = warm_up(experiment) if (warm and todo) else 0.0
        if backend is None and cluster is not None and todo:
            backend = _Dask(None, cluster, n_workers)
        elif backend is None and (n_workers == 1 or len(todo) <= 1):
            backend = _Serial()
        elif backend is None:
            backend = _Processes(min(n_workers, len(todo)))
    except BaseException:
        if backend is not None:
            backend.close(cancel=True)
        raise

    # Nothing was written until here: a bad input or an unreachable scheduler leaves `out` alone.
    if action == "wipe":
        _wipe(out)
    (out / "points").mkdir(parents=True, exist_ok=True)
    plan = {
        "name": experiment.name,
        "experiment": experiment.path,
        "experiment_sha256": experiment.sha256,
        "plan_sha256": experiment.plan_sha256,
        "scale": experiment.scale,
        "seeds": list(experiment.seeds),
        "axes": experiment.axes,
        "fixed": experiment.fixed,
        "runs": experiment.plan(),
    }
    if action != "resume" or not (out / "plan.json").is_file():
        res.atomic_write_bytes(out / "experiment.toml", experiment.source.encode())
        res.write_json(out / "plan.json", plan)
    meta_path = out / "meta.json"
    old_meta: dict[str, Any] = {}
    if action == "resume" and meta_path.is_file():
        try:
            old_meta = json.loads(meta_path.read_text())
        except ValueError:
            old_meta = {}
    session = {
        "started": started,
        "finished": None,
        "status": "running",
        "backend": _backend_info(backend),
        "resumed": len(done),
        "computed": 0,
        "warmup_seconds": round(warm_seconds, 3),
    }
    sessions = list(old_meta.get("sessions", [])) + [session]
    exp_path = experiment.path if experiment.path == "<string>" else str(Path(experiment.path).resolve())
    meta = {
        "fastfault": res.versions()["fastfault"],
        "versions": res.versions(),
        "git": res.git_revision(),
        "experiment": {
            "name": experiment.name,
            "description": experiment.description,
            "path": exp_path,
            "sha256": experiment.sha256,
            "plan_sha256": experiment.plan_sha256,
            "scale": experiment.scale,
            "points": len(experiment.points),
            "replicates": experiment.replicates,
            "runs": total,
        },
        "host": res.host(),
        "started": old_meta.get("started", started),
        "finished": None,
        "status": "running",
        "sessions": sessions,
    }
    res.write_json(meta_path, meta)

    computed = 0
    bar = tqdm(
        total=total,
        initial=len(done),
        unit="run",
        desc=experiment.name,
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
        smoothing=0.05,
    )
    pending: dict[Any, Run] = {}
    queue = iter(todo)
    try:
        try:
            exhausted = False
            while True:
                while not exhausted and len(pending) < backend.capacity:
                    nxt = next(queue, None)
                    if nxt is None:
                        exhausted = True
                        break
                    pending[backend.submit(nxt)] = nxt
                if not pending:
                    break
                for fut in backend.wait(list(pending)):
                    run = pending.pop(fut)
                    try:
                        record = fut.result()
                    except InputError as err:
                        raise InputError(
                            f"{experiment.path}: point {run.point} replicate {run.replicate} "
                            f"({run.workload_label}): {err}"
                        ) from None
                    res.write_point(out / "points", record)
                    done[run.key] = record
                    computed += 1
                    bar.update(1)
                    if on_result is not None:
                        on_result(record)
        except BaseException:
            backend.close(cancel=True)
            raise
        else:
            backend.close()
        finally:
            bar.close()
    except KeyboardInterrupt:
        _finish_meta(meta, session, "interrupted", computed, done, t0)
        res.write_json(meta_path, meta)
        raise SweepInterrupted(str(out), len(done), total) from None
    except BaseException:
        _finish_meta(meta, session, "failed", computed, done, t0)
        res.write_json(meta_path, meta)
        raise

    # Every run is durable: assemble the table from the durable records (not from memory), so a
    # resumed sweep and an uninterrupted one produce the same table.
    records = res.read_points(out / "points")
    missing = planned - set(records)
    if missing:
        raise RuntimeError(
            f"{out}: {len(missing)} runs are missing after the sweep, e.g. {sorted(missing)[:3]}",
        )
    table = res.assemble(records[k]["row"] for k in sorted(planned))
    res.write_table(table, out / "results.parquet")
    _finish_meta(meta, session, "complete", computed, records, t0)
    meta["results"] = {"path": "results.parquet", "rows": table.num_rows, "columns": table.num_columns}
    meta["timing"] = res.timing_summary(records.values())
    meta["timing"]["wall_seconds"] = round(sum(s.get("wall_seconds", 0.0) for s in meta["sessions"]), 3)
    res.write_json(meta_path, meta)
    return SweepSummary(
        name=experiment.name,
        out=str(out),
        results=str(out / "results.parquet"),
        total=total,
        computed=computed,
        resumed=session["resumed"],
        seconds=time.perf_counter() - t0,
        backend=backend.name,
        workers=backend.workers,
        rows=table.num_rows,
        columns=table.num_columns,
        meta=meta,
    )


def _finish_meta(
    meta: dict[str, Any],
    session: dict[str, Any],
    status: str,
    computed: int,
    done,
    t0: float,
) -> None:
    session["finished"] = res.now()
    session["status"] = status
    session["computed"] = computed
    session["wall_seconds"] = round(time.perf_counter() - t0, 3)
    meta["status"] = status
    meta["finished"] = session["finished"] if status == "complete" else None
    meta["durable_runs"] = len(done)
