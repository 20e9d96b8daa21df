"""PyTorch side of GSDNet: the trainable parts (exported to ONNX) and the training loop."""
