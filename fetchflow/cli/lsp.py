"""``fetchflow lsp``: the language server for workflow files, over stdio.

It needs pygls (``pip install 'fetchflow[lsp]'``), imported here only: ``--help`` and
``validate`` never load it. An editor starts it and speaks LSP on its stdin and stdout.
"""

from __future__ import annotations

import argparse

from fetchflow.cli.common import EXIT_OK
from fetchflow.errors import SettingsInvalid

__all__ = ["main"]


def main(args: argparse.Namespace) -> int:
    """Serve until the editor says exit."""
    try:
        from fetchflow.lsp.server import make_server
    except ImportError as error:
        raise SettingsInvalid(
            f"fetchflow lsp needs pygls, which is not installed ({error.name} is missing)",
            "pip install 'fetchflow[lsp]'",
        ) from None
    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("fetchflow")
    except PackageNotFoundError:
        own = "0"
    make_server(own).start_io()
    return EXIT_OK
