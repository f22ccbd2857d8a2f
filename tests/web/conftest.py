"""Fixtures of the workspace tests (helpers live in webenv.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from webenv import WebEnv, make_env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[WebEnv]:
    e = make_env(tmp_path)
    yield e
    e.close()
    e.services.close()
