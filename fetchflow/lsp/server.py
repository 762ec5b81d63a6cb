"""The language server over stdio (pygls): wires :class:`~fetchflow.lsp.analysis.Analyzer`'s
answers to LSP messages. Positions travel in the client's units (UTF-16 by default) and are
turned into characters here, so the analysis counts characters like ``validate`` does.
"""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument
from pygls.workspace.position_codec import ServerTextPosition, ServerTextRange

from fetchflow.errors import PluginError
from fetchflow.lsp.analysis import Analyzer, Completion, Diagnostic
from fetchflow.registry import StepRegistry

__all__ = ["make_server"]

_KINDS = {
    "reference": lsp.CompletionItemKind.Variable,
    "step": lsp.CompletionItemKind.Module,
    "field": lsp.CompletionItemKind.Field,
    "type": lsp.CompletionItemKind.Class,
}


def _path(document: TextDocument) -> Path:
    found = to_fs_path(document.uri)
    return Path(found) if found else Path.cwd() / "untitled.yaml"


def _lsp_diagnostic(document: TextDocument, found: Diagnostic) -> lsp.Diagnostic:
    span = ServerTextRange(
        ServerTextPosition(found.line, found.start), ServerTextPosition(found.line, found.end)
    )
    return lsp.Diagnostic(
        range=document.range_to_client_units(span),
        message=found.message,
        severity=lsp.DiagnosticSeverity.Error,
        source="fetchflow",
    )


def _lsp_completion(found: Completion) -> lsp.CompletionItem:
    documentation = (
        lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=found.documentation)
        if found.documentation
        else None
    )
    return lsp.CompletionItem(
        label=found.label,
        kind=_KINDS.get(found.kind, lsp.CompletionItemKind.Text),
        detail=found.detail or None,
        documentation=documentation,
        insert_text=found.insert_text,
    )


def make_server(version: str) -> LanguageServer:
    """The server, its features registered (start it with ``start_io()``)."""
    server = LanguageServer("fetchflow", version)
    analyzers: list[Analyzer] = []
    failure: list[str] = []

    def analyzer() -> Analyzer | None:
        if not analyzers and not failure:
            try:
                analyzers.append(Analyzer(StepRegistry.from_entry_points()))
            except PluginError as error:
                failure.append(str(error))
        return analyzers[0] if analyzers else None

    def publish(ls: LanguageServer, uri: str) -> None:
        document = ls.workspace.get_text_document(uri)
        found = analyzer()
        if found is None:
            message = f"fetchflow cannot load its step types: {failure[0]}"
            diagnostics = [_lsp_diagnostic(document, Diagnostic(0, 0, 0, message))]
        else:
            diagnostics = [
                _lsp_diagnostic(document, item)
                for item in found.diagnostics(document.source, _path(document))
            ]
        ls.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=document.version)
        )

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: LanguageServer, params: lsp.DidOpenTextDocumentParams) -> None:
        publish(ls, params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: LanguageServer, params: lsp.DidChangeTextDocumentParams) -> None:
        publish(ls, params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: LanguageServer, params: lsp.DidSaveTextDocumentParams) -> None:
        publish(ls, params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: LanguageServer, params: lsp.DidCloseTextDocumentParams) -> None:
        ls.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[])
        )

    @server.feature(
        lsp.TEXT_DOCUMENT_COMPLETION,
        lsp.CompletionOptions(trigger_characters=[".", "<", "{", " "]),
    )
    def completion(ls: LanguageServer, params: lsp.CompletionParams) -> lsp.CompletionList:
        document = ls.workspace.get_text_document(params.text_document.uri)
        found = analyzer()
        if found is None:
            return lsp.CompletionList(is_incomplete=False, items=[])
        at = document.position_from_client_units(params.position)
        items = found.complete(document.source, _path(document), at.line, at.character)
        return lsp.CompletionList(
            is_incomplete=False, items=[_lsp_completion(item) for item in items]
        )

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    def hover(ls: LanguageServer, params: lsp.HoverParams) -> lsp.Hover | None:
        document = ls.workspace.get_text_document(params.text_document.uri)
        found = analyzer()
        if found is None:
            return None
        at = document.position_from_client_units(params.position)
        text = found.hover(document.source, _path(document), at.line, at.character)
        if text is None:
            return None
        return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=text))

    return server
