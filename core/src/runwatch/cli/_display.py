"""How `runwatch watch` shows a run: JSON lines, plain lines, or a live rich panel on a terminal."""

from __future__ import annotations

import json
import time
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from runwatch._api import RunApi
from runwatch._handoff import WaitResult
from runwatch._states import State
from runwatch._status import RunStatus
from runwatch._urls import redact_text
from runwatch.cli._outcomes import label
from runwatch.text import inert

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

__all__ = [
    "Display",
    "JsonDisplay",
    "LiveDisplay",
    "PlainDisplay",
    "percent_of",
    "pick_display",
    "progress_text",
    "rich_ok",
    "state_style",
]


def progress_text(status: RunStatus | None) -> str:
    """`45% 3/10 loading` (whatever the run reports, made inert), or '' when it reports nothing."""
    p = status.progress if status is not None else None
    if p is None:
        return ""
    parts = []
    if p.percent is not None:
        parts.append(f"{p.percent:.0f}%")
    if p.items_total is not None:
        parts.append(f"{p.items_done or 0}/{p.items_total}")
    elif p.items_done is not None:
        parts.append(f"{p.items_done} done")
    if p.message:
        parts.append(inert(p.message))
    return " ".join(parts)


def percent_of(status: RunStatus | None) -> float | None:
    """The run's completion in [0, 100], from `percent` or from the item counts; None if unknown."""
    p = status.progress if status is not None else None
    if p is None:
        return None
    if p.percent is not None:
        return max(0.0, min(100.0, p.percent))
    if p.items_total:
        return max(0.0, min(100.0, 100.0 * (p.items_done or 0) / p.items_total))
    return None


def rich_ok() -> bool:
    """True when the `runwatch[cli]` extra (rich) is installed."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


class Display:
    """Shows the changes of one run, then how it ended."""

    def __init__(self, out: IO[str], api: RunApi) -> None:
        self.out, self.api = out, api
        self.begun = time.monotonic()
        self.last: RunStatus | None = None
        self.changes = 0
        self.problem: str | None = None  # why the last read failed, until the next change
        self.requests = 0  # status requests sent (told by the waiter's on_request hook)

    def __enter__(self) -> Display:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.begun

    def change(self, status: RunStatus) -> None:
        self.last, self.changes, self.problem = status, self.changes + 1, None
        self.show(status)

    def requested(self, method: str, url: str) -> None:
        self.requests += 1

    def unreadable(self, problem: Exception) -> None:
        """A read failed. The live panel shows it at once; lines and JSON keep stderr for the final error
        (with -v the log says it as it happens)."""
        self.problem = redact_text(" ".join(str(problem).split()))
        self.refresh()

    def refresh(self) -> None:
        return None

    def show(self, status: RunStatus) -> None:
        raise NotImplementedError

    def ended(self, result: WaitResult) -> None:
        """The wait ended (an error is reported by the caller, on stderr)."""
        if result.ok and result.status is not None:
            self.succeeded(result.status)
        else:
            self.failed(result)

    def succeeded(self, status: RunStatus) -> None:
        """The run ended as a success."""

    def failed(self, result: WaitResult) -> None:
        """The wait ended without success."""


class JsonDisplay(Display):
    """One JSON status per line, flushed at once, so a pipe sees each change as it happens."""

    def show(self, status: RunStatus) -> None:
        self.out.write(json.dumps(status.to_dict(), separators=(",", ":")) + "\n")
        self.out.flush()


class PlainDisplay(Display):
    """One line per change, for logs and pipes."""

    def show(self, status: RunStatus) -> None:
        extra = progress_text(status)
        line = f"[{self.elapsed:6.1f}s] {inert(status.id)}  {status.status.value:<15}{extra}".rstrip()
        self.out.write(line + "\n")
        self.out.flush()

    def succeeded(self, status: RunStatus) -> None:
        where = f"; output: {inert(status.output_ref)}" if status.output_ref else ""
        self.out.write(
            f"run {inert(status.id)} ended {status.status.value} after {self.elapsed:.1f}s{where}\n"
        )
        self.out.flush()


class LiveDisplay(Display):
    """A live panel (rich) on a terminal: state, phase, progress bar, elapsed, requests."""

    def __init__(self, out: IO[str], api: RunApi) -> None:
        super().__init__(out, api)
        self.url: str | None = None
        self.outcome: str | None = None
        self._live: Live | None = None

    def __enter__(self) -> LiveDisplay:
        from rich.console import Console
        from rich.live import Live

        self._live = Live(self, console=Console(file=self.out), refresh_per_second=8, transient=False)
        self._live.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(kind, exc, tb)
            self._live = None

    def show(self, status: RunStatus) -> None:
        self.url = status.url
        if self._live is not None:
            self._live.refresh()

    def refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def succeeded(self, status: RunStatus) -> None:
        self.outcome = f"[green]{label('succeeded')}[/]"

    def failed(self, result: WaitResult) -> None:
        self.outcome = f"[red]{label(result.outcome)}[/]"

    def __rich__(self) -> RenderableType:
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim")
        grid.add_column()
        s = self.last
        state: Any = Text("waiting for the first answer", style="dim")
        if s is not None:
            state = Text.assemble(
                (s.status.value, state_style(s)),
                f"  {s.phase.value}",
                (f"  ({inert(str(s.raw_status))})", "dim"),
            )
        grid.add_row("state", state)
        percent = percent_of(s)
        if percent is None and s is not None and s.is_terminal:  # ended: a still bar, full on success
            percent = 100.0 if s.status is State.SUCCEEDED else 0.0
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=100, completed=percent or 0, width=30, pulse=percent is None and s is not None),
            Text(progress_text(s)),
        )
        grid.add_row("progress", bar)
        if self.problem:
            grid.add_row("problem", Text(self.problem, style="yellow"))
        grid.add_row("elapsed", f"{self.elapsed:.1f}s")
        grid.add_row("requests", str(self.requests))
        grid.add_row("changes", str(self.changes))
        if s is not None and s.executor:
            grid.add_row("executor", Text(inert(s.executor)))
        if s is not None and s.error_message:
            grid.add_row("errors", Text(inert(s.error_message), style="red"))
        if s is not None and s.output_ref:
            grid.add_row("output", Text(inert(s.output_ref)))
        if self.outcome:
            grid.add_row("outcome", Text.from_markup(self.outcome))
        title = inert(s.id) if s is not None else "run"
        subtitle = Text(inert(self.url)) if self.url else None
        width = max(64, len(self.url or "") + 8)
        return Panel(grid, title=Text(f"runwatch {title}"), subtitle=subtitle, width=width)


def state_style(status: RunStatus) -> str:
    """The rich style of a state: green success, red failure, cyan running."""
    return {"SUCCEEDED": "green", "RUNNING": "cyan", "FAILED": "red", "CANCELLED": "yellow"}.get(
        status.status.value, "magenta" if status.is_terminal else "white"
    )


def pick_display(as_json: bool, out: IO[str], api: RunApi) -> Display:
    """JSON when asked; a live panel on a terminal when rich is installed; plain lines otherwise."""
    if as_json:
        return JsonDisplay(out, api)
    if out.isatty() and rich_ok():
        return LiveDisplay(out, api)
    return PlainDisplay(out, api)
