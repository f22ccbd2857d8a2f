"""Fixtures of the workspace tests (helpers live in webenv.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from webenv import WebEnv, make_env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[WebEnv]:
    e = make_env(tmp_path)
    yield e
    e.close()
    e.services.close()


@pytest.fixture(scope="module")
def browser(server: tuple[str, WebEnv]) -> Iterator[Any]:
    """Debian's chromium through Playwright, one per browser-test module, started once that
    module's `server` fixture is up."""
    from playwright.sync_api import sync_playwright
    from test_web_browser import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
