"""Where a run's steps execute: ``FETCHFLOW_TASK_RUNNER``.

- ``threads`` (the default): a thread pool in the run's own process
  (``FETCHFLOW_MAX_PARALLEL_STEPS`` threads).
- ``dask``: a local Dask cluster of worker processes, started for the run and closed with
  it (``pip install 'fetchflow[dask]'``).
- ``dask://host:port``: an existing Dask scheduler; its workers need fetchflow, the step
  plugins and the same settings (the store, the provider keys), and must reach the run's
  Prefect API (``fetchflow server`` or ``PREFECT_API_URL`` on an address they can reach).

Steps are plain serializable tasks (:mod:`fetchflow.orchestration.step_task`), so every
runner runs the same engine. The Dask runners are
:class:`~fetchflow.orchestration.dask_runner.FetchflowDaskTaskRunner` (imported only when
used): it sends the run's Prefect API to the workers (also the temporary server of a plain
``fetchflow run FILE``), keeps Ctrl-C for the run's process and never lets Dask run a step
twice.
"""

from __future__ import annotations

import os
from typing import Any

from fetchflow.errors import SettingsInvalid
from fetchflow.settings import Settings

__all__ = [
    "DASK_WORKERS_MAX",
    "check_task_runner",
    "dask_workers",
    "make_task_runner",
    "runs_steps_elsewhere",
]

#: At most this many worker processes in a ``dask`` (local) cluster (one per core).
DASK_WORKERS_MAX = 4


def runs_steps_elsewhere(settings: Settings) -> bool:
    """Whether steps run in other processes than the run's (not ``threads``)."""
    return settings.task_runner != "threads"


def check_task_runner(settings: Settings) -> None:
    """Refuse a runner that cannot work here, before anything runs.

    Raises:
        SettingsInvalid: ``dask`` or ``dask://`` without ``prefect-dask`` installed.
    """
    if not runs_steps_elsewhere(settings):
        return
    try:
        import distributed  # noqa: F401
        import prefect_dask  # noqa: F401
    except ImportError as error:
        raise SettingsInvalid(
            f"setting FETCHFLOW_TASK_RUNNER: {settings.task_runner} runs steps on Dask, but "
            f"the Dask task runner is not installed (no module named {error.name!r})",
            "pip install 'fetchflow[dask]' (prefect-dask), or set FETCHFLOW_TASK_RUNNER=threads",
        ) from None


def make_task_runner(settings: Settings) -> Any:
    """The Prefect task runner ``settings.task_runner`` names.

    Raises:
        SettingsInvalid: See :func:`check_task_runner`.
    """
    if not runs_steps_elsewhere(settings):
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=settings.max_parallel_steps)
    check_task_runner(settings)
    from fetchflow.orchestration.dask_runner import FetchflowDaskTaskRunner

    if settings.task_runner.startswith("dask://"):
        address = "tcp://" + settings.task_runner.removeprefix("dask://")
        return FetchflowDaskTaskRunner(address=address)
    workers, threads = dask_workers(settings.max_parallel_steps)
    return FetchflowDaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": threads,
            "processes": True,
            # No dashboard, and its HTTP server (always started) on a free loopback port:
            # runs side by side never compete for 8787.
            "dashboard_address": "127.0.0.1:0",
            "scheduler_kwargs": {"dashboard": False},
        }
    )


def dask_workers(parallel_steps: int, cpus: int | None = None) -> tuple[int, int]:
    """The local cluster's shape for ``parallel_steps`` steps at a time: worker processes
    (one per core, at most :data:`DASK_WORKERS_MAX`) and threads in each, so that exactly
    ``FETCHFLOW_MAX_PARALLEL_STEPS`` steps or a few more can run at once (steps mostly wait
    on providers and the store)."""
    cores = cpus if cpus is not None else (os.cpu_count() or 1)
    workers = max(1, min(parallel_steps, cores, DASK_WORKERS_MAX))
    return workers, -(-parallel_steps // workers)
