"""``fetchflow lsp`` in a matrix step: completion after ``<< matrix.`` offers the step's
axes (with their values), ``matrix`` is a root only where the step has a matrix, and hover
on ``matrix.<axis>`` says what it holds. Spoken to as an editor does (test_lsp's client)."""

from __future__ import annotations

from pathlib import Path

import test_lsp as lsp
from test_lsp import Client, completion, open_file, position

client = lsp.client

FLOW = Path(__file__).resolve().parents[1] / "data" / "lsp" / "matrix.yaml"


def test_completion_and_hover_know_the_axes_of_a_matrix_step(client: Client) -> None:
    text = FLOW.read_text(encoding="utf-8")
    uri = open_file(client, FLOW, text)
    assert client.diagnostics(uri) == []

    axes = completion(client, uri, position(text, "<< matrix.style", "<< matrix."))
    roots = completion(client, uri, position(text, "<< matrix.style", "<< "))
    elsewhere = completion(client, uri, position(text, "<< hero.output >>", "<< "))
    hover = client.request(
        "textDocument/hover",
        {"textDocument": {"uri": uri}, "position": position(text, "matrix.style", "matrix.sty")},
    )

    assert [(item["label"], item.get("detail")) for item in axes] == [
        ("product", "string"),
        ("style", "string"),
    ]
    assert axes[1]["documentation"]["value"] == 'This combination\'s style: one of "ink", "oil".'
    assert ("matrix", "this combination's product, style") in [
        (item["label"], item.get("detail")) for item in roots
    ]
    assert "matrix" not in [item["label"] for item in elsewhere]
    assert hover["contents"]["value"] == (
        '`matrix.style` — string: This combination\'s style: one of "ink", "oil".'
    )
