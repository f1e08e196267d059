"""INT8 from calibration data: explicit Q/DQ graphs, a calibration cache, precision exclusion policies.

Precision lives in the ONNX file (TensorRT 11 has no INT8 builder flag or implicit
calibrator), so the INT8 variant is a Q/DQ graph written by ONNX Runtime's static quantizer
from ranges measured on calibration images. ``attnvgg.calibration.int8.calibrate`` is the stage.
"""
