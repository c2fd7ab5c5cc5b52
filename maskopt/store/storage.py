"""Storage URLs and opening them, and loading a study by name.

Optuna's RDB storage is the only storage maskopt uses: heartbeats (a dead worker's
trial marked failed, then retried) work only there. SQLite is fine for the workers
of one machine when it runs in WAL mode (readers such as optuna-dashboard never
block the writers, optuna-dashboard#545) and every connection waits for the write
lock instead of failing with "database is locked". Many machines share a
PostgreSQL URL instead. Where the files beside a storage go: maskopt.store.locations.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import sqlalchemy.engine

from maskopt.errors import ConfigError, StudyError
from maskopt.store.records import read_trial, requeue

if TYPE_CHECKING:
    from optuna.storages import RDBStorage


# Seconds a SQLite connection waits for the write lock before "database is locked". Trials
# write a few rows each; a minute covers any burst of workers and a reading dashboard.
SQLITE_BUSY_TIMEOUT_S = 60


# Seconds between heartbeats of a running trial; a trial silent for 2x this is failed and
# retried. MASKOPT_HEARTBEAT (seconds) overrides it, for tests that kill workers.
DEFAULT_HEARTBEAT_S = 30


_OPEN_ATTEMPTS = 5


def heartbeat_interval(value: int | None = None) -> int:
    """The heartbeat interval: `value`, else $MASKOPT_HEARTBEAT, else DEFAULT_HEARTBEAT_S."""
    if value is None:
        env = os.environ.get("MASKOPT_HEARTBEAT")
        try:
            value = int(env) if env else DEFAULT_HEARTBEAT_S
        except ValueError:
            raise ConfigError(
                f"MASKOPT_HEARTBEAT: expected whole seconds >= 1, but got {env!r}."
            ) from None
    if value < 1:
        raise ConfigError(f"heartbeat: expected whole seconds >= 1, but got {value!r}.")
    return value


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite:/// URL; None for other URLs (and in-memory SQLite)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    if path in ("", ":memory:"):
        return None
    return Path(path)


def check_url(url: str) -> None:
    """StudyError in one line for a URL that does not parse, names an unknown database or a
    missing folder (nothing is opened or created)."""

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except Exception:  # sqlalchemy raises ArgumentError; any failure means "not a URL"
        raise StudyError(
            f"storage URL {url!r} is not a SQLAlchemy URL; expected e.g. sqlite:///maskopt.db or "
            "postgresql+psycopg://user@host:5432/db."
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql", "mysql", "mssql", "oracle"):
        raise StudyError(
            f"storage URL {url!r}: unknown database {parsed.get_backend_name()!r}; "
            "expected sqlite, postgresql or mysql."
        )
    path = sqlite_path(url)
    if path is None:
        return
    if not path.parent.exists():
        raise StudyError(f"storage URL {url!r}: folder {str(path.parent)!r} does not exist.")
    if not path.parent.is_dir():
        raise StudyError(f"storage URL {url!r}: {str(path.parent)!r} is a file, not a folder.")
    if path.is_dir():
        raise StudyError(f"storage URL {url!r}: {str(path)!r} is a folder, not an SQLite file.")


def _not_sqlite(url: str, path: Path) -> StudyError:
    return StudyError(
        f"storage URL {url!r}: {str(path)!r} is not an SQLite database (maskopt will not "
        "write into it); give another file name."
    )


def _enable_wal(url: str, path: Path) -> None:
    """WAL is a property of the database file: set once, every later connection has it.

    A file that is not a database (the user's notes named by mistake) is refused here, through
    SQLite, which reads its header without writing. Not with a plain open(): closing any other
    descriptor of a database file drops every POSIX lock this process holds on it, and a worker
    that still has a connection open then corrupts the database."""

    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        con = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)
        try:
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return  # already WAL: reading the mode needs no exclusive lock
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            # Switching to WAL needs the file to itself, and a lock upgrade that could deadlock
            # fails at once with "locked", without waiting out the busy timeout: another
            # process opening the same new database just now. Wait a moment and try again.
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
        except sqlite3.DatabaseError as err:
            if "not a database" in str(err):
                raise _not_sqlite(url, path) from None
            raise
        finally:
            con.close()
        time.sleep(0.05 + random.random() * 0.1)


def create_storage(
    url: str,
    heartbeat: bool = True,
    *,
    interval: int | None = None,
    retry: bool = True,
    must_exist: bool = False,
) -> RDBStorage:
    """An RDBStorage for `url`, with heartbeats (and retry of stale trials) when `heartbeat`.

    A URL that does not parse, names a missing folder or a server that does not answer is a
    StudyError in one line.
    """

    check_url(url)
    engine_kwargs: dict[str, Any] = {}
    path = sqlite_path(url)
    if must_exist and path is not None and not Path(path).exists():
        # Reading commands (best, studies, dashboard) must not leave an empty database behind.
        raise StudyError(
            f"no storage at {url}: {path} does not exist (run `maskopt search` first, or pass --storage)."
        )
    if path is not None:
        _enable_wal(url, path)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    else:
        # Drop connections the server closed while a long trial trained.
        engine_kwargs["pool_pre_ping"] = True
    kwargs: dict[str, Any] = {}
    if heartbeat:
        seconds = heartbeat_interval(interval)
        kwargs = dict(
            heartbeat_interval=seconds,
            grace_period=2 * seconds,
            heartbeat_stale_trial_callback=requeue_stale if retry else None,
        )
    # Processes that open a new database at the same moment race to create its tables
    # ("table studies already exists"): SQLite openers take turns on a file lock, and any
    # opener tries again after a moment (by then the tables are there).
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            with storage_lock(url):
                return _rdb_storage(url, engine_kwargs, kwargs)
        except Exception as err:  # driver errors have many types; all mean "cannot open storage"
            text = str(err).strip()
            if "already exists" in text and attempt + 1 < _OPEN_ATTEMPTS:
                time.sleep(0.5 * (attempt + 1))
                continue
            first = text.splitlines()[0] if text else type(err).__name__
            raise StudyError(f"cannot open storage {url!r}: {first}") from None
    raise AssertionError("unreachable")


@contextmanager
def storage_lock(url: str) -> Iterator[None]:
    """One process of this machine at a time on a SQLite storage (a file lock beside the file);
    nothing for a server, whose row locks do it. SQLite has no row locks: two workers taking a
    queued trial at the same moment would both get it."""
    path = sqlite_path(url)
    if path is None:
        yield
        return
    from filelock import FileLock

    with FileLock(str(path) + ".lock", timeout=SQLITE_BUSY_TIMEOUT_S):
        yield


def _rdb_storage(url: str, engine_kwargs: dict[str, Any], kwargs: dict[str, Any]) -> RDBStorage:

    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)


def requeue_stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """The storage's callback for a trial failed for its silence (its worker died on another
    host, or hangs): its parameters go back in the queue (records.requeue)."""

    requeue(study, read_trial(trial), died=True)


def study_names(storage: RDBStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def load_study(url: str, name: str, *, storage: RDBStorage | None = None) -> optuna.Study:
    """The study `name` in `url`; StudyError listing the names present when it is missing."""

    storage = storage or create_storage(url, heartbeat=False, must_exist=True)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = study_names(storage)
        present = ", ".join(names) if names else "none"
        raise StudyError(f"no study {name!r} in {url}; studies there: {present}.") from None
