"""`python -m maskopt.cli ...`, as the `maskopt` command."""

from maskopt.cli.app import main

main()
