"""`maskopt best --export` as a list of steps: candidates, the ensemble choice, the trade-off,
retraining, plots, the bundle. Knows nothing of command-line parsing."""
