"""Reading commands on a SQLite file that is not there say so and create nothing."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from maskopt.cli import app


@pytest.mark.parametrize("command", [["best"], ["studies"]])
def test_reading_a_missing_sqlite_storage_is_one_line_and_creates_no_file(
    tmp_path, command
) -> None:
    db = tmp_path / "nothing.db"
    result = CliRunner().invoke(app, [*command, "--storage", f"sqlite:///{db}"])
    assert result.exit_code == 1, result.output
    assert "does not exist" in result.output
    assert "Traceback" not in result.output
    assert not db.exists()
