"""Reading and validating the mask layout, labels, synthetic data, the decoded cache,
augmentation pipelines and EDA. Knows nothing of models or Optuna."""
