"""Fixtures every test directory may use (helpers to import live in :mod:`tests.support`)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STREAMSEG_* variable from the developer's shell leaks into a test.

    Modules that read settings from the environment opt in with
    ``pytestmark = pytest.mark.usefixtures("clean_env")``.
    """
    for name in list(os.environ):
        if name.upper().startswith("STREAMSEG_"):
            monkeypatch.delenv(name)
