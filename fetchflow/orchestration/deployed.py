"""The entrypoint of the deployments ``fetchflow deploy`` makes:
``fetchflow.orchestration.deployed.workflow``.

Prefect imports this module in the flow run's process, after the deployment's pull step
(:func:`fetchflow.orchestration.pool.unpack_workflow`) unpacked the workflow, and reads its
``workflow`` attribute: the flow of that workflow, built on first access
(:func:`fetchflow.orchestration.pool.deployed_flow`).
"""

from __future__ import annotations

from typing import Any

__all__: list[str] = []  # `workflow` is made on first access (__getattr__)

_built: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    if name != "workflow":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if "workflow" not in _built:
        from fetchflow.orchestration.pool import deployed_flow

        _built["workflow"] = deployed_flow()
    return _built["workflow"]
