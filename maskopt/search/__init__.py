"""The search: the k-fold objective, pruning, running a study with one or many workers."""
