"""The Prefect server as a lab runs it: PostgreSQL as its database (a real one, started here with
`pgserver`), `salvo serve` with two process workers and every deployment.

A deployment run of test_served.py runs again here against that server and completes with its
artifacts, and stopping serve leaves no process. (Two workers sharing one batch is a matter of
Salvo's claims in the batch's state, not of the server's database: it runs once, in test_served.py.)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest

from tests.deploy.conftest import Served, start_served
from tests.deploy.test_served import (  # noqa: F401 - collected here again, on PostgreSQL
    test_nightly_deployment_runs_to_completion_with_artifacts,
)

pgserver = pytest.importorskip("pgserver")
#: The server's first start creates its PostgreSQL schema; on a busy 2-core machine that is minutes.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A PostgreSQL server of its own (Unix socket only), stopped at the end of the module."""
    data = tempfile.mkdtemp(prefix="salvo-pg-")  # not under pytest's private temp folder: run as root,
    server = pgserver.get_server(data, cleanup_mode="stop")  # pgserver runs PostgreSQL as its own user
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


def database_url(server: object) -> str:
    """The SQLAlchemy/asyncpg URL of ``server``'s `postgres` database (over its Unix socket)."""
    uri = server.get_uri()  # type: ignore[attr-defined] # postgresql://postgres:@/postgres?host=/socket/dir
    return uri.replace("postgresql://", "postgresql+asyncpg://", 1).replace("postgres:@", "postgres@", 1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, postgres: object) -> Iterator[Served]:
    """`salvo serve` whose Prefect server keeps its database in ``postgres``."""
    yield from start_served(tmp_path_factory, {"PREFECT_API_DATABASE_CONNECTION_URL": database_url(postgres)})


def test_the_server_keeps_its_state_in_postgresql(served: Served, postgres: object) -> None:
    out = postgres.psql("select count(*) from deployment;")  # type: ignore[attr-defined]
    count = int(next(line.strip() for line in out.splitlines() if line.strip().isdigit()))
    assert count >= 6, out
    assert not list(served.home.glob("*.db")), "no SQLite database may be created when PostgreSQL is configured"


# Last: stop serve and check nothing is left (collected after the tests above).
from tests.deploy.test_served import test_stopping_serve_leaves_no_process  # noqa: E402, F401
