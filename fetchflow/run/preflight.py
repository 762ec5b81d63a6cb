"""Checks made right before a run, after the static check and before any step starts.

They need the machine's configuration rather than the file alone: the asset store must be
reachable and writable when a step writes files, and each step type may check what it needs
(an image step: that the API key its ``charge_type`` needs is there). A failure here is a
clear error before anything billable runs. A store that cannot be used is a settings
problem (``FETCHFLOW_STORE``, the S3 endpoint): :class:`~fetchflow.errors.SettingsInvalid`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from fetchflow.errors import RunError, SettingsInvalid, StorageError
from fetchflow.workflow.plan import Plan

if TYPE_CHECKING:
    from fetchflow.settings import Settings
    from fetchflow.storage import AssetStore

__all__ = ["StoreOpener", "check_store", "preflight"]


class StoreOpener:
    """Opens the run's asset store on first use and keeps it (one per process).

    Picklable: a copy sent to another process (a Dask worker) opens its own store there
    from the same settings.

    Args:
        settings: fetchflow settings (``FETCHFLOW_STORE`` and the S3 options).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: AssetStore | None = None
        self._lock = threading.Lock()

    def __call__(self) -> AssetStore:
        with self._lock:
            if self._store is None:
                from fetchflow.storage import open_store

                self._store = open_store(self.settings)
            return self._store

    def __getstate__(self) -> dict[str, object]:
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["settings"])  # type: ignore[misc]


def check_store(open_store: Callable[[], AssetStore]) -> AssetStore:
    """Open the asset store and check it can be used (``fetchflow push``, runs that write).

    Raises:
        SettingsInvalid: ``FETCHFLOW_STORE`` is malformed, its folder cannot be written, or
            its S3 endpoint or bucket cannot be reached; the StorageError is chained.
    """
    try:
        store = open_store()
        store.preflight()
    except StorageError as error:
        raise SettingsInvalid(error.format()) from error
    return store


def preflight(plan: Plan, settings: Settings) -> StoreOpener:
    """Check everything a run needs from this machine; return the run's store opener.

    Raises:
        SettingsInvalid: The store is unusable (malformed ``FETCHFLOW_STORE``, a folder that
            cannot be written, an S3 endpoint or bucket that cannot be reached); the
            :class:`~fetchflow.errors.StorageError` is chained.
        RunError: A step type is not ready (its error names the step).
    """
    opener = StoreOpener(settings)
    check_store(opener)  # every run keeps its record and checkpoints in the store
    for step in plan.steps.values():
        try:
            step.step_cls.preflight(step.raw_config, settings)
        except RunError as error:
            # Said where the file asks for it: the step's line, like a problem `validate`
            # finds (a missing key or model folder is about what the step wants).
            error.step_id = error.step_id or step.id
            if error.step_id == step.id and not error.where:
                error.where, error.step_type = f"{plan.file}:{step.line}", step.type
            raise
    return opener
