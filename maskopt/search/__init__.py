"""The search: the k-fold objective, pruning, running a study with one or many workers.

Calling the package runs a search: `maskopt.search(trials=20)` is `maskopt.api.search`."""

from maskopt import callable_package

callable_package(__name__)
