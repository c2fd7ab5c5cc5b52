"""maskopt: find the best face-mask status classifier by hyperparameter search."""

__version__ = "0.1.0"
