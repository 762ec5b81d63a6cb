"""fetchflow: YAML image-production workflows, checked before they run, run on Prefect.

The public API for step authors and embedders. Names are imported on first use, so that the
``fetchflow`` command starts fast; importing this package never imports Prefect (only
:mod:`fetchflow.orchestration.runner` does, when a run starts).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fetchflow.errors import (
        FetchflowError,
        Interrupted,
        PluginError,
        Problem,
        ProviderError,
        RuleViolation,
        RunError,
        SettingsInvalid,
        StepError,
        StorageError,
        TemplateError,
        WorkflowInvalid,
    )
    from fetchflow.interrupt import check_interrupt, stop_requested
    from fetchflow.registry import StepRegistry
    from fetchflow.step import Step, StepConfig, StepContext, deferred

__version__ = "0.1.0"

_HOMES = {
    "fetchflow.errors": (
        "FetchflowError",
        "RuleViolation",
        "Interrupted",
        "PluginError",
        "Problem",
        "ProviderError",
        "RunError",
        "SettingsInvalid",
        "StepError",
        "StorageError",
        "TemplateError",
        "WorkflowInvalid",
    ),
    "fetchflow.interrupt": ("check_interrupt", "stop_requested"),
    "fetchflow.step": (
        "Step",
        "StepConfig",
        "StepContext",
        "deferred",
    ),
    "fetchflow.registry": ("StepRegistry",),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "FetchflowError",
    "Interrupted",
    "PluginError",
    "Problem",
    "ProviderError",
    "RuleViolation",
    "RunError",
    "SettingsInvalid",
    "Step",
    "StepConfig",
    "StepContext",
    "StepError",
    "StepRegistry",
    "StorageError",
    "TemplateError",
    "WorkflowInvalid",
    "__version__",
    "check_interrupt",
    "deferred",
    "stop_requested",
]


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'fetchflow' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
