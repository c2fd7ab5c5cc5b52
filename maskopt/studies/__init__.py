"""After the search, reading the store only: the studies in a storage, the best trials of one,
and optuna-dashboard on them."""
