"""fetchflow's built-in step library.

Each module holds one step type; every one is registered through the ``fetchflow.steps``
entry-point group in ``pyproject.toml``, exactly like a third-party plugin.
"""
