"""What maskopt writes, and the one rule it keeps: it replaces only what it wrote itself.

A study holds days of GPU trials and a data folder holds the user's photos; one mistyped
`--out` must never cost them. So every command that writes goes through this module:

- A **file the user names** (`eda --out report.html`, `predict --out preds.csv`,
  `--config-out cfg.json`) may be overwritten, as any command-line tool does, but atomically
  (a temporary file beside it, then a rename) and never when the name is a folder
  (`check_file_out`, `atomic_path`, `atomic_write_text`).
- A **folder maskopt owns** (a bundle, a synthetic data set, a training run) is an `Owned`
  kind: the files that mark it (a bundle's manifest) and the names it may hold. A path that is
  absent, an empty folder or an earlier output of that kind may be written; anything else is
  refused in one line before any work (`check_out_dir`). The new folder is built in a hidden
  sibling and swapped in whole at the end (`replace_dir`): the old one stays as it was until
  the new one is complete, and a failure, Ctrl-C or SIGKILL in between leaves it untouched.

The errors are `OutputError`s: they name the path, say what is there and what to do.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from maskopt.errors import MaskoptError

# Staging siblings of an owned folder OUT: .OUT.maskopt-new-XXXX while it is built (with the
# builder's pid inside), .OUT.maskopt-old-XXXX while the replaced one is removed.
_NEW, _OLD, _PID = "maskopt-new-", "maskopt-old-", ".maskopt-pid"
_SHOWN = 4  # names listed in a refusal


class OutputError(MaskoptError):
    """An output path holds something maskopt did not write, or cannot be written at all."""


@dataclass(frozen=True)
class Owned:
    """A kind of folder a command writes and may later replace: recognised by `marks` (every
    one present) and by holding nothing but `entries` (the names it writes)."""

    what: str  # "bundle": how messages name it
    marks: tuple[str, ...]  # files that make a folder one of these
    entries: frozenset[str]  # every top-level name it may hold (marks included)
    made_by: str  # the command that writes it, for messages

    def holds(self, folder: Path) -> bool:
        """Whether `folder` is an earlier output of this kind, and nothing else."""
        names = {p.name for p in folder.iterdir()}
        return all((folder / m).is_file() for m in self.marks) and names <= self.entries


def _first_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_parent(path: Path, flag: str) -> None:
    """The nearest existing folder above `path` must be a folder (a file cannot hold one)."""
    above = _first_existing(path.parent)
    if not above.is_dir():
        raise OutputError(
            f"{flag} {path}: refused: {above} is a file, so nothing can be written under it; "
            "give another path."
        )


def _listing(folder: Path, names: list[str]) -> str:
    shown = sorted(names)[:_SHOWN]
    shown = [n + "/" if (folder / n).is_dir() else n for n in shown]
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(shown) + more


def check_file_out(path: str | os.PathLike, flag: str = "--out") -> Path:
    """A file the user named for writing: it may exist (it is overwritten, atomically), but not
    as a folder, and not under a file. Missing parent folders are made when it is written."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(
            f"{flag} {path}: refused: it is a folder; name a file to write "
            f"(e.g. {path / 'out'}{path.suffix or ''})."
        )
    _check_parent(path, flag)
    return path


def check_out_dir(path: str | os.PathLike, kind: Owned, flag: str = "--out") -> Path:
    """An owned folder's path, checked before any work: absent, an empty folder, or an earlier
    `kind` (which `replace_dir` then replaces whole); anything else is an OutputError."""
    path = Path(path)
    _check_parent(path, flag)
    if not path.exists():
        return path
    if not path.is_dir():
        raise OutputError(
            f"{flag} {path}: refused: it is a file, not a {kind.what}; give another path "
            "or remove it by hand."
        )
    here, target = Path.cwd().resolve(), path.resolve()
    if target == here or target in here.parents:
        raise OutputError(
            f"{flag} {path}: refused: it is the current folder (or holds it); give a new "
            f"folder for the {kind.what}."
        )
    names = [p.name for p in path.iterdir()]
    if not names or kind.holds(path):
        return path
    foreign = [n for n in names if n not in kind.entries]
    if foreign:
        what = f"{_listing(path, foreign)}, which {kind.made_by} did not write"
    else:
        marks = " and ".join(kind.marks)
        what = f"{_listing(path, names)} but no {marks}: not a {kind.what} {kind.made_by} wrote"
    raise OutputError(
        f"{flag} {path}: refused: it holds {what}; give another path or remove it by hand."
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_staging(out: Path) -> None:
    """Remove the staging siblings an earlier, killed run left beside `out`: every old one, and
    new ones whose builder is gone (a live builder's pid is inside its folder)."""
    for p in out.parent.glob(f".{out.name}.maskopt-*"):
        if not p.is_dir():
            continue
        if p.name.startswith(f".{out.name}.{_NEW}"):
            try:
                pid = int((p / _PID).read_text())
            except (OSError, ValueError):
                pid = 0
            if pid and _pid_alive(pid):
                continue
        elif not p.name.startswith(f".{out.name}.{_OLD}"):
            continue
        shutil.rmtree(p, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where it is not
    available, and the caller falls back to two renames."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextmanager
def replace_dir(path: str | os.PathLike, kind: Owned, flag: str = "--out") -> Iterator[Path]:
    """Yield a hidden staging folder beside `path`; on success it takes `path`'s place in one
    step and the old folder (an earlier `kind`, or empty) is removed; on any error, Ctrl-C or
    kill, `path` is as it was and the staging folder is removed (now, or by the next run)."""
    out = check_out_dir(path, kind, flag).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    _sweep_staging(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{_NEW}", dir=out.parent))
    (tmp / _PID).write_text(str(os.getpid()))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; an output is an ordinary folder
    try:
        yield tmp
        (tmp / _PID).unlink()
        check_out_dir(out, kind, flag)  # nothing of the user's arrived there meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not out.exists():
        os.replace(tmp, out)
        return
    old = tmp.with_name(tmp.name.replace(_NEW, _OLD))
    if _exchange(tmp, out):
        os.replace(tmp, old)
    else:  # two renames: `out` is missing for a moment
        os.replace(out, old)
        os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """0666 less the process umask: the mode `open()` would have given a new file."""
    return 0o666 & ~_umask()


@contextmanager
def atomic_path(path: str | os.PathLike, flag: str = "--out") -> Iterator[Path]:
    """Yield a temporary name beside `path` to write to; renamed to `path` when the block ends
    without error (never a half-written file), removed otherwise. Parents are made."""
    path = check_file_out(path, flag)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, file_mode())  # mkstemp makes 0600; a result file gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, flag: str = "--out") -> Path:
    """Write `text` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path, flag) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, flag: str = "--out") -> Path:
    """Write `data` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path, flag) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def check_shared_dir(
    path: str | os.PathLike,
    *,
    flag: str,
    marker: str,
    what: str,
    known: Callable[[], Iterable[str]] = tuple,
) -> Path:
    """A folder maskopt adds files to and never empties (a study's artifacts, its TensorBoard
    runs): it may be absent, empty, marked as maskopt's (`marker`, see `mark_dir`) or one that
    a study records (`known()`, asked only when needed); else an OutputError before any work."""
    path = Path(path)
    _check_parent(path, flag)
    if not path.exists():
        return path
    if not path.is_dir():
        raise OutputError(
            f"{flag} {path}: refused: it is a file, not a folder for {what}; give another path."
        )
    names = [p.name for p in path.iterdir()]
    if not names or marker in names:
        return path
    target = path.resolve()
    if any(Path(k).resolve() == target for k in known()):
        return path
    raise OutputError(
        f"{flag} {path}: refused: it holds {_listing(path, names)}, not {what} maskopt wrote; "
        "give another folder or remove it by hand."
    )


def mark_dir(path: str | os.PathLike, marker: str) -> Path:
    """Make the folder (and its parents) and mark it as maskopt's, once."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if not (path / marker).exists():
        atomic_write_text(path / marker, "written by maskopt: a later search may add to it\n")
    return path
