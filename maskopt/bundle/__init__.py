"""The export bundle: its manifest, one `predict` for a bundle or a checkpoint, the PyTorch and
ONNX runtimes, and the ensemble as one ONNX graph."""
