"""``fetchflow lsp``: the language server for workflow files, over stdio.

It needs pygls (``pip install 'fetchflow[lsp]'``), imported here only: ``--help`` and
``validate`` never load it. An editor starts it and speaks LSP on its stdin and stdout.
"""

from __future__ import annotations

import argparse
import logging

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
    _quiet_logs()
    make_server(own).start_io()
    return EXIT_OK


class _OneLine(logging.Formatter):
    """A log record as one line: its exception's type and message, no traceback."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"fetchflow lsp: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            text += f": {type(error).__name__}: {error}"
        return text


def _quiet_logs() -> None:
    """pygls logs a malformed message with its traceback (Python's last-resort handler):
    the editor's log gets one line instead."""
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLine())
    handler.setLevel(logging.WARNING)
    for name in ("pygls", "lsprotocol"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
