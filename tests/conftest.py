"""Session-wide test setup: one real Prefect API for the whole run, and environments for children.

Two tiers: tests marked ``pure`` (domain logic; they start no server) run alone with
``make test-fast``; every other test gets the session's real Prefect API.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures_s3"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pure: domain logic only; starts no server (make test-fast)")


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect API (SQLite) for every test; yields its URL."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["SALVO_LOCAL_SERVER"] = "0"  # the suite's API is this harness, never a background server
    from prefect.settings import get_current_settings, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):
        with temporary_settings(updates={"flows.heartbeat_frequency": None}):
            yield str(get_current_settings().api.url)


@pytest.fixture(autouse=True)
def _prefect_unless_pure(request: pytest.FixtureRequest) -> None:
    """Every test but the pure ones runs against the session's Prefect API."""
    if request.node.get_closest_marker("pure") is None:
        request.getfixturevalue("prefect_api")


@pytest.fixture
def child_env(prefect_api: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a `salvo` child process: same interpreter, same Prefect API, no telemetry."""
    from tests.helpers import child_env_for

    return child_env_for(prefect_api)


@pytest.fixture(autouse=True)
def _prefect_console_outlives_capsys() -> Iterator[None]:
    """A test that runs `salvo` in-process with ``capsys`` may be where Prefect sets up its logging: its
    console handler then prints to that test's capture stream, closed when the test ends, and a later
    test's log line raises "I/O operation on closed file". After each test, such a handler prints to
    the session's stderr again (a `salvo` process's own stderr is never closed under it)."""
    yield
    import sys

    if "prefect" not in sys.modules:
        return
    from deployments.prefect_patches import console_handlers

    for handler in console_handlers():
        console = getattr(handler, "console", None)
        if console is not None and getattr(console.file, "closed", False):
            console.file = sys.stderr
