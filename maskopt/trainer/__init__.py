"""Training one `TrainConfig` on one fold (or on all the data): models, losses, optimizers,
schedulers, the fit / validate loop, metrics, checkpoints and prediction.
Knows nothing of Optuna."""
