"""Latency-versus-accuracy report from result files only (bench, evaluate, validate, sidecars).

Never imports torch, onnxruntime, onnx or tensorrt; matplotlib only when a plot is drawn.
"""

from attnvgg.report.make import make_report
from attnvgg.report.plot import pareto_front

__all__ = ["make_report", "pareto_front"]
