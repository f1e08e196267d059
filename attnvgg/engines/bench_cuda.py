"""GPU timing for the bench: device-resident inputs, compute apart from end to end.

Why a separate module: this is the only bench code that needs a CUDA GPU, so it is kept small
and apart, and everything else is tested on a CPU. It has NOT been run on a GPU by the code's
author (the machine it was written on has none); it follows the documented APIs
(``torch.cuda.Event``, ``torch.cuda.CUDAGraph``/``torch.cuda.graph``, ONNX Runtime's
``IOBinding``, TensorRT's ``execute_async_v3`` through ``TensorRTRunner.infer_device``).

One timed iteration is, as in trtexec: copy the batch from pinned host memory to the device
input buffer, run, copy the first output back to pinned host memory. End to end = all three;
compute = the run alone.

* PyTorch (cuda) and TensorRT: CUDA events (``timer: "cuda-events"``). PyTorch: on the current
  stream; CUDA graphs (option) capture the model call with ``torch.cuda.graph``. TensorRT: shapes
  and addresses are bound once per batch (``TensorRTRunner.bind``); each step runs on the
  runner's own stream (events, copies and engine alike) and times only ``execute_async_v3``
  (``TensorRTRunner.execute``); CUDA graphs (option) capture that one call with
  ``capture_error_mode="thread_local"`` (trtexec's mode) and replay it.
* ONNX Runtime (CUDA provider): inputs and outputs bound to device buffers with IOBinding. ORT
  runs on its own stream, not the one torch events are recorded on, so this path uses the host
  clock around synchronised steps (``timer: "host"``): H2D then a stream sync, then
  ``run_with_iobinding`` + ``synchronize_outputs`` (compute), then D2H and a sync.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from attnvgg.config import BenchSpec
from attnvgg.errors import InputError, MissingDependency, StageError, first_line

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from attnvgg.runners.base import Runner

Step = Callable[[], "tuple[float, Optional[float]]"]


def cuda_ready() -> tuple[bool, str]:
    """(True, GPU name) if torch sees a CUDA GPU, else (False, why). Never raises."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        return False, f"torch does not import ({type(exc).__name__})"
    try:
        if not torch.cuda.is_available():
            return False, (f"torch {torch.__version__} sees no CUDA GPU "
                           f"(CUDA build: {torch.version.cuda or 'none, a CPU-only build'})")
        return True, torch.cuda.get_device_name(torch.cuda.current_device())
    except Exception as exc:  # noqa: BLE001
        return False, f"CUDA check failed ({type(exc).__name__}: {first_line(exc, 160)})"


def make_step(runner: "Runner", name: str, x: "np.ndarray", spec: BenchSpec) -> tuple[Step, str, bool, list[str]]:
    """(step, timer, cuda_graphs used, notes) for one GPU runner and one input batch."""
    ok, why = cuda_ready()
    if not ok:
        raise MissingDependency(f"cannot time {runner.name} on a GPU: {why}", "run the bench on a machine with a CUDA GPU")
    if runner.backend == "pytorch":
        return _torch_step(runner, x, spec)
    if runner.backend == "onnxruntime-cuda":
        step = _ort_step(runner, name, x)
        notes = ["CUDA graphs are not used for ONNX Runtime"] if spec.cuda_graphs else []
        return step, "host", False, notes
    if runner.backend == "tensorrt":
        return _trt_step(runner, name, x, spec)
    raise InputError(f"no GPU timing for runner {runner.name} ({runner.backend})", "bench it on the CPU")


def _event_step(h2d: Callable[[], Any], compute: Callable[[], Any], d2h: Callable[[Any], Any]) -> Step:
    """Four CUDA events on the current stream: before H2D, after H2D, after compute, after D2H."""
    import torch

    e0, e1, e2, e3 = (torch.cuda.Event(enable_timing=True) for _ in range(4))

    def step() -> tuple[float, float]:
        e0.record()
        h2d()
        e1.record()
        out = compute()
        e2.record()
        d2h(out)
        e3.record()
        e3.synchronize()
        return e0.elapsed_time(e3), e1.elapsed_time(e2)

    return step


# ----------------------------------------------------------------------------- PyTorch

def _torch_graph(runner: Any, x_dev: Any) -> Callable[[], Any]:
    """Capture the model call on a static input buffer (torch.cuda.graph, after side-stream warm-up)."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            runner.infer_device(x_dev)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = runner.infer_device(x_dev)

    def replay() -> Any:
        graph.replay()
        return y

    return replay


def _torch_step(runner: Any, x: "np.ndarray", spec: BenchSpec) -> tuple[Step, str, bool, list[str]]:
    import torch

    x_dev = runner.to_device(x)                       # the runner's dtype and memory format
    x_host = torch.from_numpy(x).to(x_dev.dtype).pin_memory()
    compute: Callable[[], Any] = lambda: runner.infer_device(x_dev)  # noqa: E731
    graphs, notes = False, []
    if spec.cuda_graphs:
        try:
            compute, graphs = _torch_graph(runner, x_dev), True
        except Exception as exc:  # noqa: BLE001 - some models cannot be captured; time them eagerly
            notes.append(f"CUDA graph capture failed, timed eagerly ({type(exc).__name__}: {first_line(exc, 160)})")
    y = compute()
    torch.cuda.synchronize()
    y_host = torch.empty(tuple(y.shape), dtype=y.dtype, pin_memory=True)
    step = _event_step(lambda: x_dev.copy_(x_host, non_blocking=True), compute,
                       lambda out: y_host.copy_(out, non_blocking=True))
    return step, "cuda-events", graphs, notes


# ----------------------------------------------------------------------------- ONNX Runtime

def _ort_step(runner: Any, name: str, x: "np.ndarray") -> Step:
    import torch

    sess = runner.session
    dev = torch.cuda.current_device()
    x_host = torch.from_numpy(x).pin_memory()
    x_dev = x_host.to("cuda")
    io = sess.io_binding()
    io.bind_input(name=name, device_type="cuda", device_id=dev, element_type=x.dtype.type,
                  shape=tuple(x.shape), buffer_ptr=x_dev.data_ptr())
    outputs = [o.name for o in sess.get_outputs()]
    for o in outputs:                                  # first run: let ORT allocate, to learn shapes
        io.bind_output(o, "cuda", dev)
    sess.run_with_iobinding(io)
    first = io.copy_outputs_to_cpu()
    io.clear_binding_outputs()
    bufs = []
    for o, arr in zip(outputs, first):
        t = torch.empty(arr.shape, dtype=torch.from_numpy(arr).dtype, device="cuda")
        io.bind_output(name=o, device_type="cuda", device_id=dev, element_type=arr.dtype.type,
                       shape=tuple(arr.shape), buffer_ptr=t.data_ptr())
        bufs.append(t)
    y_host = torch.empty(tuple(bufs[0].shape), dtype=bufs[0].dtype, pin_memory=True)
    stream = torch.cuda.current_stream()

    def step() -> tuple[float, float]:
        t0 = time.perf_counter_ns()
        x_dev.copy_(x_host, non_blocking=True)
        stream.synchronize()                           # ORT's stream does not wait for torch's
        t1 = time.perf_counter_ns()
        sess.run_with_iobinding(io)
        io.synchronize_outputs()
        t2 = time.perf_counter_ns()
        y_host.copy_(bufs[0], non_blocking=True)
        stream.synchronize()
        t3 = time.perf_counter_ns()
        return (t3 - t0) / 1e6, (t2 - t1) / 1e6

    return step


# ----------------------------------------------------------------------------- TensorRT

def _trt_step(runner: Any, name: str, x: "np.ndarray", spec: BenchSpec) -> tuple[Step, str, bool, list[str]]:
    """Shapes and addresses bound once for this batch (``runner.bind``); each step times ``execute_async_v3``
    alone (``runner.execute``), as trtexec does, on the runner's stream; optionally replayed from a CUDA
    graph captured with ``capture_error_mode="thread_local"`` (trtexec's cudaStreamCaptureModeThreadLocal)."""
    import torch

    x_host = torch.from_numpy(x).pin_memory()
    x_dev = x_host.to("cuda")
    first_out = runner.output_names()[0]
    y = runner.bind({name: x_dev})[first_out]          # shapes, addresses, output buffers: once
    torch.cuda.synchronize()
    compute: Callable[[], Any] = lambda: (runner.execute(), y)[1]  # noqa: E731
    graphs, notes = False, []
    if spec.cuda_graphs:
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=runner.stream, capture_error_mode="thread_local"):
                runner.execute()

            def replay() -> Any:
                graph.replay()
                return y

            compute, graphs = replay, True
        except Exception as exc:  # noqa: BLE001 - engines with data-dependent shapes cannot be captured
            notes.append(f"CUDA graph capture failed, timed without ({type(exc).__name__}: {first_line(exc, 160)})")
    y_host = torch.empty(tuple(y.shape), dtype=y.dtype, pin_memory=True)
    step = _event_step(lambda: x_dev.copy_(x_host, non_blocking=True), compute,
                       lambda out: y_host.copy_(out, non_blocking=True))

    def on_runner_stream() -> tuple[float, Optional[float]]:
        with torch.cuda.stream(runner.stream):        # events, copies and the engine on one stream
            return step()

    return on_runner_stream, "cuda-events", graphs, notes
