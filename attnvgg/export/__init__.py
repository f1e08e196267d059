"""PyTorch -> ONNX, simplification, graph summary, FP16 variant."""
