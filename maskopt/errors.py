"""Errors a user can act on.

The CLI catches `MaskoptError`, prints its message (no traceback) and exits with
its `exit_code`. Library code raises these for bad input; anything else is a bug.
"""

from __future__ import annotations


class MaskoptError(Exception):
    """An error the user can fix: the message says what was expected and what came."""

    exit_code = 1


class DataError(MaskoptError):
    """The data folder does not follow the layout; `problems` lists every one found."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class ConfigError(MaskoptError):
    """A config, option value or space file is invalid (key, value and what is allowed)."""

    exit_code = 2


class StudyError(MaskoptError):
    """A study or storage problem: unknown study, wrong URL, mismatched data or folds."""
