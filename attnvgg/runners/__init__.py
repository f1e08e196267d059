"""One runner interface below every stage: PyTorch, ONNX Runtime, TensorRT (and OpenVINO).

Parity, accuracy, calibration checks and the bench all take a ``Runner``; stages import from
here, never from each other for this.
"""
