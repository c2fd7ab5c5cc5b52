"""optuna-dashboard on a storage (`maskopt dashboard`), with its artifact store and the trials'
TensorBoard folders on this machine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from maskopt.errors import ConfigError
from maskopt.store.locations import artifacts_dir_for, create_artifact_store, tensorboard_dir_for
from maskopt.store.records import StudySettings
from maskopt.store.s3 import is_s3_url
from maskopt.store.storage import create_storage

if TYPE_CHECKING:
    from optuna.storages import RDBStorage

    from maskopt.store.records import ModelStore


def dashboard_url(host: str, port: int) -> str:
    return f"http://{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{port}/"


@dataclass(frozen=True)
class Dashboard:
    """What `maskopt dashboard` shows: the storage, its artifacts and TensorBoard folders."""

    storage: RDBStorage
    artifacts: Path | str | None  # the artifact store's folder or s3:// URL; None: none found
    store: ModelStore | None
    tensorboard: list[Path]  # folders here holding the trials' TensorBoard events


def open_dashboard(url: str, artifacts: str | os.PathLike | None) -> Dashboard:
    """The storage and what goes with it: the artifact store (dashboard_artifacts) and the
    TensorBoard folders here (each study's, and the default beside the SQLite file)."""

    storage = create_storage(url, heartbeat=False, must_exist=True)
    found = [StudySettings.from_attrs(s.user_attrs) for s in storage.get_all_studies()]
    settings = [s for s in found if s is not None]
    recorded = [s.artifacts_dir for s in settings if s.artifacts_dir]
    location = dashboard_artifacts(url, artifacts, recorded)
    store = create_artifact_store(location) if location is not None else None
    candidates = [s.tensorboard_dir for s in settings]
    candidates.append(str(tensorboard_dir_for(url, None)))
    tensorboard = sorted({Path(c).resolve() for c in candidates if c and Path(c).is_dir()})
    return Dashboard(storage, location, store, tensorboard)


def dashboard_artifacts(
    url: str, artifacts: str | os.PathLike | None, recorded: Sequence[str]
) -> Path | str | None:
    """--artifacts as given; else the folder beside the SQLite file if it is there; else the
    one location of those the studies `recorded` that is usable here (an s3:// URL, or a
    folder there from here); else None (the dashboard runs without artifacts)."""
    if artifacts is not None:
        return artifacts_dir_for(url, artifacts)
    try:
        beside = artifacts_dir_for(url, None)
    except ConfigError:  # a server URL
        beside = None
    if isinstance(beside, Path) and beside.is_dir():
        return beside
    usable = sorted({r for r in recorded if is_s3_url(r) or Path(r).is_dir()})
    return artifacts_dir_for(url, usable[0]) if len(usable) == 1 else None


def serve_dashboard(dashboard: Dashboard, host: str, port: int) -> None:
    """Run optuna-dashboard on the storage (and the artifact store, when there is one); blocks."""
    from optuna_dashboard import run_server

    run_server(dashboard.storage, host=host, port=port, artifact_store=dashboard.store)
