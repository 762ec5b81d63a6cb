"""Pytest fixtures serving the fake image APIs; import them into a test module by name.

``from fakes import fixtures`` then ``fake_openai = fixtures.fake_openai`` makes the fixture
available to that test module only (``tests/steps`` has no ``__init__.py``, so pytest puts
it on ``sys.path``; a ``tests/steps/__init__.py`` would clash with the ``steps`` package).

Each fixture starts a fresh server, clears the SDKs' base-URL environment variables (so a
developer's shell cannot redirect a test), and fails the test if the fake itself crashed
while answering.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fake_gemini import FakeGemini
from .fake_openai import FakeOpenAI

__all__ = ["fake_gemini", "fake_openai"]

#: Every variable that points the SDKs at a provider: tests clear them first.
PROVIDER_VARIABLES = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
)
_BASE_URL_VARIABLES = ("OPENAI_BASE_URL", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_VERTEX_BASE_URL")


def _clear_base_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _BASE_URL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """A running :class:`FakeOpenAI`; ``fake_openai.base_url`` goes to ``OpenAIProvider``."""
    _clear_base_urls(monkeypatch)
    with FakeOpenAI() as fake:
        yield fake
    assert not fake.crashes, f"the fake OpenAI server crashed: {fake.crashes}"


@pytest.fixture
def fake_gemini(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGemini]:
    """A running :class:`FakeGemini`; ``fake_gemini.base_url`` goes to ``GeminiProvider``."""
    _clear_base_urls(monkeypatch)
    with FakeGemini() as fake:
        yield fake
    assert not fake.crashes, f"the fake Gemini server crashed: {fake.crashes}"
