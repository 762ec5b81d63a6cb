"""The likely cause of a YAML slip, said where it is: an unquoted template, a quote left open.

``prompt: {{ a.output }}`` is valid YAML for a mapping whose key is a mapping, and
``prompt: {{ a.output }} on a table`` a syntax error at its end; both mean "quote this
template". A quote left open on its line runs on to the next quote, often lines below,
where the syntax error is found; the place to fix is where it opened.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from yaml.nodes import MappingNode

from fetchflow.errors import Problem
from fetchflow.templating import canonical

__all__ = ["brace_hint", "is_braced_template", "syntax_problem"]

_Scanner: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_QUOTED_STYLES = ("'", '"')
_UNQUOTED_BRACE = re.compile(r"(?:^|[:\-?,\[]\s*)\{[{%#]")


def is_braced_template(node: MappingNode) -> bool:
    """Whether ``node`` is ``{{ ... }}`` written unquoted: a flow mapping whose keys are
    flow mappings."""
    return (
        bool(node.flow_style)
        and bool(node.value)
        and all(isinstance(key, MappingNode) and key.flow_style for key, _ in node.value)
    )


_SYNTAX_HINT = (
    "check the indentation and quoting on this line and the one before; "
    "template expressions are written << expr >>"
)
_TEMPLATE_TEXT = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}")


def brace_hint(text: str) -> str:
    """How to write a template value YAML read as a mapping (``{{ a.output }}``)."""
    found = _TEMPLATE_TEXT.search(text)
    written = found.group(0) if found else text.strip()
    safe = canonical(written) if found else "<< expr >>"
    return (
        "a value that starts with { is read as a YAML mapping: quote it "
        f"({json.dumps(written, ensure_ascii=False)}) or write {safe}"
    )


def _unclosed_quote(text: str, problem: yaml.Mark) -> yaml.Mark | None:
    """Where a quoted value opened when it swallowed the lines after it.

    A quote left open on its line runs on until the next quote of its kind, often lines
    below, where the leftovers make the syntax error; so when the error stands on the line
    where a multi-line quoted value ended, the quote's opening is the place to show.
    """
    opened: yaml.Mark | None = None
    try:
        for token in yaml.scan(text, Loader=_Scanner):
            if token.start_mark.index > problem.index:
                break
            if (
                isinstance(token, yaml.ScalarToken)
                and token.style in _QUOTED_STYLES
                and token.end_mark.line > token.start_mark.line
            ):
                opened = token.start_mark if token.end_mark.line == problem.line else None
    except yaml.YAMLError:
        pass
    return opened


def syntax_problem(error: yaml.MarkedYAMLError, text: str, file: str) -> Problem:
    """One located problem for a YAML syntax error, with the likely cause as its hint."""
    lines = text.splitlines()
    # At the end of the stream, the problem is where the unclosed thing opened.
    at_end = "end of stream" in (error.problem or "")
    mark = (error.context_mark if at_end else None) or error.problem_mark or error.context_mark
    what = error.problem or "invalid YAML"
    if error.context:
        what = f"{what} ({error.context})"
    hint = _SYNTAX_HINT
    quote = _unclosed_quote(text, error.problem_mark) if error.problem_mark and not at_end else None
    if quote is not None:
        mark = quote
        closing = lines[quote.line][quote.column] if quote.line < len(lines) else '"'
        end = error.problem_mark.line + 1 if error.problem_mark else quote.line + 1
        what = f"this quote is not closed on its line: the value runs on to line {end}"
        hint = (
            f"close the quote ({closing}) on line {quote.line + 1}, "
            "or write a long text as a block (key: |)"
        )
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    if quote is None and 0 < line <= len(lines):
        brace = _UNQUOTED_BRACE.search(lines[line - 1])
        if brace is not None:
            column = brace.end() - 1
            hint = brace_hint(lines[line - 1][brace.end() - 2 :])
    return Problem(
        message=f"YAML syntax error: {what}", hint=hint, file=file, line=line, column=column
    )
