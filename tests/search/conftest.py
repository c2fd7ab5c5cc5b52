"""Storages for the search tests: a SQLite file in tmp_path, and the local PostgreSQL.

The PostgreSQL tests skip only when no server answers on 127.0.0.1:5432; with CI=true or
MASKOPT_REQUIRE_POSTGRES=1 a missing server is a failure, so they cannot silently stop running.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_URL = os.environ.get(
    "MASKOPT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
FAKE = "tests.search.fake:create_objective"


def _postgres_answers() -> str | None:
    try:
        import psycopg

        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3
        ) as con:
            con.execute("select 1")
        return None
    except Exception as err:  # any driver error means "no usable server"
        return str(err).splitlines()[0]


def _required() -> bool:
    return (
        os.environ.get("CI", "").lower() == "true"
        or os.environ.get("MASKOPT_REQUIRE_POSTGRES") == "1"
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A storage URL; each PostgreSQL test uses unique study names (see `study_name`)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'maskopt.db'}"
        return
    problem = _postgres_answers()
    if problem is not None:
        if _required():
            pytest.fail(f"PostgreSQL is required here (CI) but does not answer: {problem}")
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432: {problem}")
    yield PG_URL


@pytest.fixture
def study_name(storage_url: str) -> Iterator[str]:
    """A study name no other test (or earlier run) uses; its study is deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    import optuna

    from maskopt.store.storage import create_storage

    storage = create_storage(storage_url, heartbeat=False)
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except KeyError:
        pass
    storage.remove_session()
