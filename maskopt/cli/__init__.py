"""The `maskopt` command line (`app`); see app.py."""

from maskopt.cli.app import app, main
from maskopt.cli.render import friendly

__all__ = ["app", "friendly", "main"]
