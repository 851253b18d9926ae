"""Shared fixtures: a fresh event loop per test, and the program run under mocks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.pulumi_project import load_project

PROJECT_DIR = Path(__file__).resolve().parent.parent
STACKS = load_project().stacks()
KUBERNETES_VERSION = "1.32.0"


@pytest.fixture(autouse=True)
def fresh_event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """Pulumi keeps state on the running loop: no test may see another's."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(None)
