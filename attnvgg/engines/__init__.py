"""Runners (PyTorch, ONNX Runtime, TensorRT) behind one interface, the TensorRT builder, the bench."""
