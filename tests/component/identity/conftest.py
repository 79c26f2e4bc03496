"""A fresh identity (SQLite, notify double, provider test server) for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.identity import IdentityEnv, identity_env


@pytest.fixture
def env(tmp_path: Path) -> Iterator[IdentityEnv]:
    with identity_env(tmp_path) as running:
        yield running
