"""Where every file beside a study goes, and the artifact store opened there.

Beside a SQLite storage `maskopt.db` (any name): `maskopt.artifacts/` (Optuna's artifact
store: the trials' OOF predictions and fold models; or --artifacts, a folder or an
s3://bucket[/prefix]), `maskopt.tensorboard/` (every trial's TensorBoard run; or
--tensorboard) and `maskopt.mlflow.db` (--track mlflow without MLFLOW_TRACKING_URI). A server
URL has no file to sit beside: --artifacts is required, TensorBoard goes to
./maskopt.tensorboard. A folder maskopt adds to is marked as its own (`*_MARKER`), so that a
later search adds to it and a folder of the user's is refused (maskopt.outputs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from optuna.artifacts import FileSystemArtifactStore

from maskopt.errors import ConfigError
from maskopt.outputs import check_shared_dir, mark_dir
from maskopt.store.records import StudySettings
from maskopt.store.s3 import create_s3_artifact_store, is_s3_url
from maskopt.store.storage import create_storage, sqlite_path

if TYPE_CHECKING:
    import optuna

    from maskopt.store.records import ModelStore


from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


# Marks an artifact folder as maskopt's: a later search may add to it (maskopt.outputs).
ARTIFACTS_MARKER = ".maskopt-artifacts"


def artifacts_dir_for(url: str, artifacts: str | os.PathLike | None) -> Path | str:
    """Where artifacts go: `artifacts` if given, else beside the SQLite file
    (maskopt.db -> maskopt.artifacts/). A folder is a Path; an s3://bucket[/prefix] URL stays
    the str it came as (Path() would eat its //; store.s3). A server URL needs an explicit
    location that every worker machine reaches: a shared folder or an S3 URL."""
    if is_s3_url(artifacts):
        return str(artifacts)
    if artifacts is not None:
        return Path(artifacts)
    path = sqlite_path(url)
    if path is None:
        raise ConfigError(
            f"--artifacts is required with storage {url!r}: give a folder or an s3://bucket "
            "every worker can reach (the default, beside the file, exists only for "
            "sqlite:///FILE URLs)."
        )
    return path.with_suffix(".artifacts")


def study_artifacts_dir(
    url: str, given: str | os.PathLike | None, study: optuna.Study
) -> Path | str:
    """A study's artifact location: `given` (--artifacts); else the one its search recorded
    (an S3 URL, or a folder if it is there from here: it may be relative to another working
    directory); else the default beside the SQLite file."""

    settings = StudySettings.from_attrs(study.user_attrs)
    recorded = None if settings is None else settings.artifacts_dir
    if given is None and recorded and (is_s3_url(recorded) or Path(recorded).is_dir()):
        return artifacts_dir_for(url, recorded)
    return artifacts_dir_for(url, given)


def find_artifact_store(
    url: str, given: str | os.PathLike | None, study: optuna.Study | None = None
) -> ModelStore | None:
    """For reading commands: the artifact store if its folder exists (they create nothing) or
    it is on S3 (ConfigError when the bucket cannot be read); None where there is no folder,
    or none can be named (a server URL without --artifacts)."""
    try:
        location = (
            study_artifacts_dir(url, given, study) if study else artifacts_dir_for(url, given)
        )
    except ConfigError:
        return None
    if isinstance(location, Path) and not location.is_dir():
        return None
    return create_artifact_store(location)


def create_artifact_store(location: str | os.PathLike) -> ModelStore:
    """The Optuna artifact store at `location`: an s3://bucket[/prefix] URL (its bucket
    checked, store.s3), or a folder (created) for Optuna's file-system store."""
    if is_s3_url(location):
        return create_s3_artifact_store(str(location))

    directory = Path(location)
    try:
        mark_dir(directory, ARTIFACTS_MARKER)
    except OSError as err:
        raise ConfigError(f"artifacts folder {str(directory)!r}: {err.strerror}.") from None
    return FileSystemArtifactStore(str(directory))


def check_artifacts_dir(url: str, location: Path | str, flag: str = "--artifacts") -> None:
    """A search's artifact folder, before any work: absent, empty, maskopt's (marked) or one a
    study of `url` records; anything else (the project folder, a folder of photos) is refused
    in one line. An S3 URL is the user's bucket: nothing to check here."""
    if not is_s3_url(location):
        check_shared_dir(
            location,
            flag=flag,
            marker=ARTIFACTS_MARKER,
            what="a study's artifacts",
            known=lambda: recorded_dirs(url),
        )


def recorded_dirs(url: str) -> list[str]:
    """Every folder the studies of `url` record (artifacts, TensorBoard); none for a storage
    that is not there yet."""

    path = sqlite_path(url)
    if path is not None and not path.is_file():
        return []
    storage = create_storage(url, heartbeat=False, must_exist=True)
    try:
        found = [StudySettings.from_attrs(s.user_attrs) for s in storage.get_all_studies()]
        return [
            folder
            for settings in found
            if settings is not None
            for folder in (settings.artifacts_dir, settings.tensorboard_dir)
            if folder and not is_s3_url(folder)
        ]
    finally:
        storage.remove_session()


# Marks a TensorBoard folder as maskopt's: a later search may add runs to it (maskopt.outputs).
TENSORBOARD_MARKER = ".maskopt-tensorboard"


def check_tensorboard_dir(url: str, tensorboard: str | os.PathLike | None) -> Path:
    """The search's TensorBoard folder, before any work: absent, empty, maskopt's or one a study
    records; anything else is refused in one line (maskopt.outputs.check_shared_dir)."""

    return check_shared_dir(
        tensorboard_dir_for(url, tensorboard),
        flag="--tensorboard",
        marker=TENSORBOARD_MARKER,
        what="TensorBoard runs",
        known=lambda: recorded_dirs(url),
    )


def tensorboard_dir_for(url: str, tensorboard: str | os.PathLike | None) -> Path:
    """Where the trials' TensorBoard runs go: `tensorboard` if given, else beside the SQLite
    file (maskopt.db -> maskopt.tensorboard/), else ./maskopt.tensorboard on this machine."""
    if tensorboard is not None:
        return Path(tensorboard)

    path = sqlite_path(url)
    return path.with_suffix(".tensorboard") if path is not None else Path("maskopt.tensorboard")


def mlflow_uri_for(url: str) -> str | None:
    """The MLflow store of a search: None where MLFLOW_TRACKING_URI is set (MLflow reads it)
    or the storage is a server (MLflow's own default); else a SQLite file beside the SQLite
    storage (maskopt.db -> maskopt.mlflow.db)."""

    path = sqlite_path(url)
    if os.environ.get("MLFLOW_TRACKING_URI") or path is None:
        return None
    return f"sqlite:///{path.with_suffix('.mlflow.db')}"
