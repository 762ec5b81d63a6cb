"""fetchflow: YAML image-production workflows, checked before they run, run on Prefect.

The public API for step authors and embedders. Importing it never imports Prefect: only
:mod:`fetchflow.runner` does, when a run starts.
"""

from __future__ import annotations

from fetchflow.errors import (
    FetchflowError,
    PluginError,
    Problem,
    ProviderError,
    RunError,
    StepError,
    StorageError,
    TemplateError,
    WorkflowInvalid,
)
from fetchflow.step import RuleViolation, Step, StepConfig, StepContext, StepRegistry, deferred

__version__ = "0.1.0"

__all__ = [
    "FetchflowError",
    "PluginError",
    "Problem",
    "ProviderError",
    "RuleViolation",
    "RunError",
    "Step",
    "StepConfig",
    "StepContext",
    "StepError",
    "StepRegistry",
    "StorageError",
    "TemplateError",
    "WorkflowInvalid",
    "__version__",
    "deferred",
]
