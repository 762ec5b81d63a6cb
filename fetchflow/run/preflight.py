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

StoreOpener = Callable[[], "AssetStore"]


def _store_opener(settings: Settings) -> StoreOpener:
    from fetchflow.storage import open_store

    opened: list[AssetStore] = []
    lock = threading.Lock()

    def opener() -> AssetStore:
        with lock:
            if not opened:
                opened.append(open_store(settings))
            return opened[0]

    return opener


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
    opener = _store_opener(settings)
    if plan.needs_store:
        check_store(opener)
    for step in plan.steps.values():
        try:
            step.step_cls.preflight(step.raw_config, settings)
        except RunError as error:
            error.step_id = error.step_id or step.id
            raise
    return opener
