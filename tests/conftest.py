"""Shared fixtures: a fresh event loop per test, and the program run under mocks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import settings as runtime_settings

from tools.harness.mocks import AtomicMocks, RecordingMonitor
from tools.harness.offline import forget_previous_run
from tools.harness.pulumi_project import load_project

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


@pytest.fixture
def unit_mocks(fresh_event_loop: asyncio.AbstractEventLoop) -> Iterator[RecordingMonitor]:
    """Mocks for a test that builds one component itself (under @pulumi.runtime.test)."""
    forget_previous_run()
    runtime_settings.set_root_resource(None)  # type: ignore[arg-type]
    monitor = RecordingMonitor(AtomicMocks())
    pulumi.runtime.set_mocks(monitor.mocks, project="atomic-mysql", stack="unit", preview=False, monitor=monitor)
    yield monitor
    monitor.close_thread_loops()


@pytest.fixture(scope="session")
def previewed_stacks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every stack previewed once, exactly as `make preview` writes it (read-only for tests)."""
    from tools import preview

    out = tmp_path_factory.mktemp("build")
    for stack in STACKS:
        preview.preview(stack, out_root=out, quiet=True)
    return out


@pytest.fixture(scope="session")
def dev_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The dev stack's master booted for real on loopback from its own user-data (shared by the tests
    that read from it, dry-run against it or add uniquely named objects of their own; tests that
    change it boot their own)."""
    from tools.testing import control_plane

    with control_plane.boot("dev", tmp_path_factory.mktemp("dev-control-plane")) as plane:
        yield plane
