"""One exception tree. The CLI turns any of these into a one-line message and an exit code.

Exit codes: 1 a failed check (parity, accuracy budget), 2 bad input from the user,
3 a stage that could not complete, 4 a missing optional dependency or hardware.
"""

from __future__ import annotations


class AttnvggError(Exception):
    """Base class. ``str(err)`` must be one line: what is wrong, where, and what to do."""

    exit_code = 3

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = self.message.rstrip(".")
        if self.hint:
            text += f"; {self.hint.rstrip('.')}"
        return " ".join(text.split())


class InputError(AttnvggError):
    """The user gave something we cannot use: a missing file, a wrong checkpoint, bad options."""

    exit_code = 2


class CheckFailed(AttnvggError):
    """A check ran and did not pass (parity, accuracy budget). The artifact exists; it failed."""

    exit_code = 1


class StageError(AttnvggError):
    """A stage could not produce its artifact for a reason that is not the user's input."""

    exit_code = 3


class MissingDependency(AttnvggError):
    """An optional package or hardware (onnxruntime, tensorrt, a GPU) is not present."""

    exit_code = 4


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (a library's multi-line error, a C++
    dump), or its type name when it has none; at most ``limit`` characters. Every one-line error
    that quotes a library's exception goes through this."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]


def require(module: str, install: str):
    """Import an optional heavy module or raise MissingDependency with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependency(
            f"{module} is not installed ({exc})", f"install it with: {install}"
        ) from exc
