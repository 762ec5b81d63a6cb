"""Where a run's steps execute: ``FETCHFLOW_TASK_RUNNER``.

- ``threads`` (the default): a thread pool in the run's own process
  (``FETCHFLOW_MAX_PARALLEL_STEPS`` threads).
- ``dask``: a local Dask cluster of worker processes, started for the run
  (``pip install 'fetchflow[dask]'``).
- ``dask://host:port``: an existing Dask scheduler; its workers need fetchflow, the step
  plugins and the same settings (the store, the provider keys).

Steps are plain serializable tasks (:mod:`fetchflow.orchestration.step_task`), so every
runner runs the same engine.
"""

from __future__ import annotations

from typing import Any

from fetchflow.errors import SettingsInvalid
from fetchflow.settings import Settings

__all__ = ["check_task_runner", "make_task_runner", "runs_steps_elsewhere"]


def runs_steps_elsewhere(settings: Settings) -> bool:
    """Whether steps run in other processes than the run's (not ``threads``)."""
    return settings.task_runner != "threads"


def check_task_runner(settings: Settings) -> None:
    """Refuse a runner that cannot work here, before anything runs.

    Raises:
        SettingsInvalid: ``dask`` without ``prefect-dask`` installed.
    """
    if not runs_steps_elsewhere(settings):
        return
    try:
        import prefect_dask  # noqa: F401
    except ImportError:
        raise SettingsInvalid(
            f"FETCHFLOW_TASK_RUNNER={settings.task_runner}: the Dask task runner is not "
            "installed\n  hint: pip install 'fetchflow[dask]' (prefect-dask), or set "
            "FETCHFLOW_TASK_RUNNER=threads"
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
    from prefect_dask.task_runners import DaskTaskRunner

    if settings.task_runner.startswith("dask://"):
        return DaskTaskRunner(address="tcp://" + settings.task_runner.removeprefix("dask://"))
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": min(settings.max_parallel_steps, 4),
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )
