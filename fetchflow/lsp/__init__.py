"""``fetchflow lsp``: a language server for workflow files (diagnostics, completion, hover).

:mod:`fetchflow.lsp.analysis` answers in plain Python (no LSP library); only
:mod:`fetchflow.lsp.server` imports pygls (``pip install 'fetchflow[lsp]'``).
"""
