"""Workflow files to a checked plan, pure: YAML loading with a source map, the spec,
template and reference checks, the graph, the plan, inputs and the JSON Schema.

No Prefect, no network, no storage: this is what ``fetchflow validate`` runs.
"""
