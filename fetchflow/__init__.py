"""fetchflow: YAML image-production workflows, checked before they run, run on Prefect.

The public API for step authors and embedders (and :mod:`fetchflow.testing` for their
tests). Names are imported on first use, so that the ``fetchflow`` command starts fast;
importing this package never imports Prefect (only :mod:`fetchflow.orchestration.runner`
does, when a run starts).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fetchflow.errors import (
        ApprovalAnswerError,
        BudgetExceeded,
        CommandError,
        FetchflowError,
        Interrupted,
        PluginError,
        Problem,
        ProviderError,
        ResumeError,
        RuleViolation,
        RunError,
        ServeError,
        ServerError,
        SettingsInvalid,
        StepError,
        StorageError,
        TemplateError,
        UsageError,
        WorkflowInvalid,
    )
    from fetchflow.interrupt import (
        check_interrupt,
        stop_requested,
    )
    from fetchflow.registry import (
        StepRegistry,
    )
    from fetchflow.step import (
        CostEstimate,
        OutputLength,
        Step,
        StepConfig,
        StepContext,
        deferred,
    )

__version__ = "0.1.0"

#: Where each public name lives; it is imported from there on first use.
_HOMES = {
    "fetchflow.errors": (
        "ApprovalAnswerError",
        "BudgetExceeded",
        "CommandError",
        "FetchflowError",
        "Interrupted",
        "PluginError",
        "Problem",
        "ProviderError",
        "ResumeError",
        "RuleViolation",
        "RunError",
        "ServeError",
        "ServerError",
        "SettingsInvalid",
        "StepError",
        "StorageError",
        "TemplateError",
        "UsageError",
        "WorkflowInvalid",
    ),
    "fetchflow.interrupt": (
        "check_interrupt",
        "stop_requested",
    ),
    "fetchflow.registry": ("StepRegistry",),
    "fetchflow.step": (
        "CostEstimate",
        "OutputLength",
        "Step",
        "StepConfig",
        "StepContext",
        "deferred",
    ),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "ApprovalAnswerError",
    "BudgetExceeded",
    "CommandError",
    "CostEstimate",
    "FetchflowError",
    "Interrupted",
    "OutputLength",
    "PluginError",
    "Problem",
    "ProviderError",
    "ResumeError",
    "RuleViolation",
    "RunError",
    "ServeError",
    "ServerError",
    "SettingsInvalid",
    "Step",
    "StepConfig",
    "StepContext",
    "StepError",
    "StepRegistry",
    "StorageError",
    "TemplateError",
    "UsageError",
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
