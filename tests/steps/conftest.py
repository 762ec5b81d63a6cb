"""Image settings a test chose (``use_image_settings``) end with the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from steps.imaging.settings import use_image_settings


@pytest.fixture(autouse=True)
def _image_settings_from_the_environment() -> Iterator[None]:
    yield
    use_image_settings(None)
