"""`maskopt best --export` as a list of steps: candidates, the ensemble choice, the trade-off,
retraining, plots, the bundle. Knows nothing of command-line parsing.

Calling the package exports: `maskopt.export(top=3)` is `maskopt.api.export`."""

from maskopt import callable_package

callable_package(__name__)
