"""Tracking each trial in TensorBoard (always), Weights & Biases or MLflow: one backend a module,
`tracker` drives them."""
