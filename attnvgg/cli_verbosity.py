"""-q/--quiet and -v/--verbose on every attnvgg command, added in one place.

Why a group class: a command added later gets the two flags without anyone remembering them,
and they mean the same everywhere: -q keeps results, FAILED lines and errors (no notes, no
progress bars, no stage lines in ``run``); -v adds detail lines. The level lives in
``attnvgg.console``, which the stages log through.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

from attnvgg import console

QUIET_HELP = "Only results, failed checks and errors: no notes, progress bars or stage lines."
VERBOSE_HELP = "Also print detail lines (each stage's facts, search steps)."


def _with_level(callback: Callable[..., Any], own_quiet: bool) -> Callable[..., Any]:
    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        quiet = kwargs.get("quiet", False) if own_quiet else kwargs.pop("quiet", False)
        verbose = kwargs.pop("verbose", False)
        console.set_level(console.level_from_flags(int(bool(quiet)), int(bool(verbose))))
        try:
            return callback(*args, **kwargs)
        finally:
            console.set_level(console.NORMAL)

    return wrapper


class VerbosityGroup(click.Group):
    """A click group whose every command takes -q/--quiet and -v/--verbose."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        names = {p.name for p in cmd.params}
        if "verbose" not in names and cmd.callback is not None:
            own_quiet = "quiet" in names       # a command's own --quiet (train) keeps its meaning too
            if not own_quiet:
                cmd.params.append(click.Option(["-q", "--quiet"], is_flag=True, default=False, help=QUIET_HELP))
            cmd.params.append(click.Option(["-v", "--verbose"], is_flag=True, default=False, help=VERBOSE_HELP))
            cmd.callback = _with_level(cmd.callback, own_quiet)
        super().add_command(cmd, name)
