"""What a search leaves behind and what maskopt changes in the process: nothing it was not asked
to. Also: one home per option, and only Optuna's public API on studies and storages."""

from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import typer
from typer.testing import CliRunner

from maskopt.cli import app
from maskopt.errors import ConfigError
from maskopt.search.options import SearchOptions
from maskopt.search.runner import run_search
from maskopt.store.storage import create_storage
from tests.search.conftest import FAKE

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "maskopt"

# The libraries maskopt builds on are imported first: what importing them does (torch adds
# warning filters, optuna.artifacts too, through urllib3) is theirs. What is checked is
# maskopt's own code, and that cv2 (whose import edits LD_LIBRARY_PATH), albumentations and
# plotly stay unimported until they are used.
UNTOUCHED = """
import importlib, os, pkgutil, sys, warnings
import optuna, optuna.artifacts, timm, torch
env, filters, level = dict(os.environ), list(warnings.filters), optuna.logging.get_verbosity()
import maskopt
for m in pkgutil.walk_packages(maskopt.__path__, "maskopt."):
    if not m.name.endswith("__main__"):  # running the command line is not importing it
        importlib.import_module(m.name)
from maskopt.store.storage import create_storage
create_storage("sqlite:///" + sys.argv[1], heartbeat=True, interval=2).remove_session()
assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())
assert list(warnings.filters) == filters, "warning filters changed"
assert optuna.logging.get_verbosity() == level, "optuna's log level changed"
assert "albumentations" not in sys.modules and "plotly" not in sys.modules
from maskopt.data.augment import create_augment
create_augment(1)
print(os.environ.get("NO_ALBUMENTATIONS_UPDATE"), "albumentations" in sys.modules)
"""


def test_importing_maskopt_and_opening_storage_change_nothing_global(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    out = subprocess.run(
        [sys.executable, "-c", UNTOUCHED, str(tmp_path / "m.db")],
        env=dict(env, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    # set only once albumentations is about to be imported
    assert out.stdout.split() == ["1", "True"]


def _optuna_private_names() -> set[str]:
    """Private attribute names of the Optuna objects maskopt handles."""
    from optuna.artifacts import FileSystemArtifactStore
    from optuna.storages import BaseStorage, RDBStorage
    from optuna.trial import FrozenTrial, Trial

    names = set()
    for cls in (optuna.Study, Trial, FrozenTrial, BaseStorage, RDBStorage, FileSystemArtifactStore):
        for klass in cls.__mro__:
            names |= {n for n in vars(klass) if n.startswith("_") and not n.startswith("__")}
    # set in __init__ (not class attributes)
    names |= {"_study_id", "_trial_id", "_storage", "_thread_local", "_backend", "_base_path"}
    return names


def test_no_sql_and_no_private_attributes_of_optuna_objects() -> None:
    private = _optuna_private_names()
    sql_words = ("SELECT ", "UPDATE ", "DELETE FROM", "INSERT INTO", "trial_user_attributes")
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        rel = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in private:
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    problems.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.Attribute) and node.attr in ("text", "exec_driver_sql"):
                problems.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                problems += [
                    f"{rel}:{node.lineno}: SQL {w!r}" for w in sql_words if w in node.value
                ]
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                sql = {"text", "select", "update", "delete", "insert"}
                problems += [f"{rel}:{node.lineno}: {a.name}" for a in node.names if a.name in sql]
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("optuna"):
                if any(part.startswith("_") for part in (node.module or "").split(".")):
                    problems.append(f"{rel}:{node.lineno}: from {node.module} import ...")
    assert problems == []
    assert {"_study_id", "_trial_id", "_get_stale_trial_ids"} <= private  # the scan can see them


def test_help_lists_the_commands_in_the_order_of_the_work() -> None:
    out = CliRunner(env={"COLUMNS": "120"}).invoke(app, ["--help"]).output
    listed = [
        line.split()[1] for line in out.splitlines() if line.startswith("│ ") and "  " in line
    ]
    order = "synth eda search studies best predict train spaces dashboard".split()
    assert [n for n in listed if not n.startswith("-")] == order


def test_search_options_have_one_home() -> None:
    """Every `maskopt search` option is a SearchOptions field whose default it takes."""
    command = typer.main.get_command(app).commands["search"]  # type: ignore[attr-defined]
    fields = {f.name: f for f in dataclasses.fields(SearchOptions)}
    defaults = SearchOptions()
    for param in command.params:
        assert param.name in fields, param.name
        if param.name == "track":  # repeatable: a list on the command line, a tuple here
            assert tuple(param.default or ()) == defaults.track
        elif param.name != "gpus":  # text on the command line, parsed into a tuple
            assert param.default == getattr(defaults, param.name), param.name
    assert defaults.space == "auto"


def test_space_auto_is_resolved_by_the_library(tmp_path, monkeypatch) -> None:
    import torch

    monkeypatch.setenv("FAKE_SLEEP", "0")
    opts = SearchOptions(storage=f"sqlite:///{tmp_path / 'm.db'}", trials=1, objective=FAKE)
    summary = run_search(opts, show_progress=False)
    assert summary.space == ("default" if torch.cuda.is_available() else "cpu")
    assert summary.finished == 1


@pytest.mark.parametrize(
    "kwargs, env, match",
    [
        # refused before the storage is made
        ({"pruner": "hyperband", "warmup_steps": 4}, {}, "--warmup-steps with --pruner hyperband"),
        ({"sampler": "grid", "space": "cpu"}, {}, "--sampler grid needs listed values"),
        # refused by the worker, after the storage and the study were made
        ({}, {"MASKOPT_HEARTBEAT": "often"}, "MASKOPT_HEARTBEAT: expected whole seconds"),
    ],
)
def test_a_search_that_fails_before_any_trial_leaves_no_file(
    tmp_path, monkeypatch, kwargs, env, match
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    db = tmp_path / "new.db"
    opts = SearchOptions(storage=f"sqlite:///{db}", trials=1, objective=FAKE, **kwargs)
    with pytest.raises(ConfigError, match=match):
        run_search(opts, show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_failed_search_keeps_a_storage_that_was_there(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MASKOPT_HEARTBEAT", "often")
    url = f"sqlite:///{tmp_path / 'old.db'}"
    optuna.create_study(storage=create_storage(url, heartbeat=False), study_name="other")
    with pytest.raises(ConfigError):
        run_search(SearchOptions(storage=url, trials=1, objective=FAKE), show_progress=False)
    assert (tmp_path / "old.db").exists()
    names = optuna.get_all_study_names(storage=create_storage(url, heartbeat=False))
    assert sorted(names) == ["maskopt", "other"]
