"""The study's format and where it lives: `records` (every key of a study and its trials, the
settings), `storage` (URLs, opening them, loading a study), `s3`, `locations` (every file beside
a storage: artifacts, TensorBoard, MLflow). Beneath the search, which writes through it; knows
nothing of training or the search loop."""
