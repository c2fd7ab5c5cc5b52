"""Combining members' probabilities: voting, greedy selection, temperatures, and the
out-of-sample choice of an ensemble. Pure functions on arrays: no files, no Optuna."""
