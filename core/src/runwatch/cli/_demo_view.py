"""How the demo shows its runs: a live rich table on a terminal, plain lines elsewhere, or JSON lines."""

from __future__ import annotations

import json
import time
from typing import IO, TYPE_CHECKING, Any

from runwatch._status import RunStatus
from runwatch.cli._demo import Row
from runwatch.cli._display import percent_of, progress_text, rich_ok, state_style

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

__all__ = ["DemoView", "JsonView", "LiveView", "PlainView", "pick_view", "plain_table"]

SUMMARY_HEADERS = ("#", "scenario", "run", "outcome", "expected", "ok", "requests", "seen", "time")
OK_COLUMN = SUMMARY_HEADERS.index("ok")
_COUNTER_NAMES = (
    ("429", "429"),
    ("5xx", "5xx"),
    ("404", "404"),
    ("304", "304"),
    ("drop", "dropped"),
    ("malformed", "garbled"),
    ("cancel", "cancel"),
)


def detail(row: Row) -> str:
    """What was notable on the way: `5x429 2xdropped 1xillegal 4xpushed`."""
    seen = [f"{row.counters[key]}x{label}" for key, label in _COUNTER_NAMES if row.counters.get(key)]
    if row.anomalies:
        seen.append(f"{row.anomalies}xillegal")
    if row.pushes:
        seen.append(f"{row.pushes}xpushed")
    return " ".join(seen)


def summary_rows(rows: list[Row]) -> list[tuple[str, ...]]:
    """One tuple per run, in SUMMARY_HEADERS order."""
    return [
        (
            str(r.index + 1),
            r.scenario.name,
            r.run_id or "-",
            r.outcome or "-",
            r.scenario.expect,
            "yes" if r.ok else "NO",
            str(r.requests),
            detail(r),
            f"{r.seconds:.1f}s",
        )
        for r in rows
    ]


def footer(rows: list[Row], stats: dict[str, Any], elapsed: float) -> str:
    """One line: how many runs ended as expected, what they cost, over how many connections."""
    good = sum(r.ok for r in rows)
    hooks = stats.get("webhooks", {}).get("sent", 0)
    verdict = "all as expected" if good == len(rows) else f"{len(rows) - good} NOT as expected"
    return (
        f"{len(rows)} runs, {good} ended as expected ({verdict}); {stats.get('requests_total', 0)} requests "
        f"over {stats.get('connections', 0)} connection(s), {hooks} webhook deliveries, {elapsed:.1f}s"
    )


def plain_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Aligned text columns, for logs and pipes."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = [headers, tuple("-" * w for w in widths), *rows]
    return ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]


class DemoView:
    """Receives the demo's events: runs start and change and end, then the summary."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.began = time.monotonic()
        self.rows: list[Row] = []

    def _print(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def start(self, rows: list[Row], url: str) -> None:
        self.rows, self.began = rows, time.monotonic()

    def change(self, row: Row, status: RunStatus) -> None:
        """A run was started, or the waiter saw it change."""

    def note(self, row: Row, text: str) -> None:
        """Something worth saying about a run (an ignored illegal move)."""

    def ended(self, row: Row) -> None:
        """A wait ended (row.outcome says how)."""

    def stop(self) -> None:
        """Every wait has ended, or the demo is stopping."""

    def summary(self, rows: list[Row], stats: dict[str, Any], elapsed: float) -> None:
        raise NotImplementedError


class PlainView(DemoView):
    """One line per change and per end, then the summary as aligned text."""

    def start(self, rows: list[Row], url: str) -> None:
        super().start(rows, url)
        self._print(f"runwatch demo: {len(rows)} runs on the reference server at {url}")

    def _prefix(self, row: Row) -> str:
        return f"[{time.monotonic() - self.began:5.1f}s] {row.scenario.name:<18} {row.run_id or '-':<14}"

    def change(self, row: Row, status: RunStatus) -> None:
        extra = progress_text(status)
        if status.heartbeat_at is not None and status.status.value == "RUNNING":
            extra += f" heartbeat {status.heartbeat_at:%H:%M:%S.%f}"[:-3]
        self._print(f"{self._prefix(row)} {status.status.value:<15} {extra.strip()}".rstrip())

    def note(self, row: Row, text: str) -> None:
        self._print(f"{self._prefix(row)} ({text})")

    def ended(self, row: Row) -> None:
        mark = "as expected" if row.ok else f"EXPECTED {row.scenario.expect}"
        self._print(f"{self._prefix(row)} -> {row.outcome} ({mark}): {row.message}")

    def summary(self, rows: list[Row], stats: dict[str, Any], elapsed: float) -> None:
        self._print("")
        for line in plain_table(SUMMARY_HEADERS, summary_rows(rows)):
            self._print(line)
        self._print(footer(rows, stats, elapsed))


class JsonView(DemoView):
    """JSON lines: `change` and `end` events as they happen, then one `result` per run and a `summary`."""

    def _emit(self, event: dict[str, Any]) -> None:
        self._print(json.dumps(event, separators=(",", ":")))

    def change(self, row: Row, status: RunStatus) -> None:
        self._emit({"event": "change", "scenario": row.scenario.name, "status": status.to_dict()})

    def note(self, row: Row, text: str) -> None:
        self._emit({"event": "note", "scenario": row.scenario.name, "run_id": row.run_id, "note": text})

    def ended(self, row: Row) -> None:
        self._emit(
            {
                "event": "end",
                "scenario": row.scenario.name,
                "run_id": row.run_id,
                "outcome": row.outcome,
                "message": row.message,
            }
        )

    def summary(self, rows: list[Row], stats: dict[str, Any], elapsed: float) -> None:
        for r in rows:
            self._emit(
                {
                    "event": "result",
                    "scenario": r.scenario.name,
                    "run_id": r.run_id,
                    "outcome": r.outcome,
                    "expected": r.scenario.expect,
                    "ok": r.ok,
                    "requests": r.requests,
                    "counters": r.counters,
                    "illegal_ignored": r.anomalies,
                    "pushes": r.pushes,
                    "seconds": round(r.seconds, 3),
                    "message": r.message,
                }
            )
        self._emit(
            {
                "event": "summary",
                "runs": len(rows),
                "as_expected": sum(r.ok for r in rows),
                "ok": all(r.ok for r in rows),
                "requests_total": stats.get("requests_total"),
                "connections": stats.get("connections"),
                "seconds": round(elapsed, 3),
            }
        )


class LiveView(DemoView):
    """A live rich table while the runs go (one row per run), then the summary table."""

    def __init__(self, out: IO[str]) -> None:
        super().__init__(out)
        self._live: Live | None = None
        self._console: Console | None = None

    def start(self, rows: list[Row], url: str) -> None:
        from rich.console import Console
        from rich.live import Live

        super().start(rows, url)
        self._console = Console(file=self.out)
        self._console.print(f"[bold]runwatch demo[/]: {len(rows)} runs on the reference server at {url}")
        self._live = Live(
            get_renderable=self._table, console=self._console, refresh_per_second=8, transient=True
        )
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _table(self) -> Table:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"watching ({time.monotonic() - self.began:.1f}s)", title_justify="left")
        for name in ("scenario", "state", "phase", "progress", "", "requests", "outcome"):
            table.add_column(name, no_wrap=True)
        for r in self.rows:
            s = r.last
            percent = percent_of(s)
            bar = ProgressBar(
                total=100,
                completed=percent or 0,
                width=20,
                pulse=percent is None and r.ended is None and s is not None,
            )
            outcome = "" if r.outcome is None else f"[{'green' if r.ok else 'red'}]{r.outcome}[/]"
            table.add_row(
                r.scenario.name,
                Text(s.status.value, style=state_style(s)) if s else "starting",
                s.phase.value if s else "",
                bar,
                Text(progress_text(s)[:24]),
                str(r.requests),
                outcome,
            )
        return table

    def summary(self, rows: list[Row], stats: dict[str, Any], elapsed: float) -> None:
        from rich.table import Table
        from rich.text import Text

        assert self._console is not None
        table = Table(title="runwatch demo: summary", title_justify="left")
        for name in SUMMARY_HEADERS:
            table.add_column(name, justify="right" if name in ("#", "requests", "time") else "left")
        for r, cells in zip(rows, summary_rows(rows), strict=True):
            style = "green" if r.ok else "bold red"
            table.add_row(*(Text(c, style=style if i == OK_COLUMN else "") for i, c in enumerate(cells)))
        self._console.print(table)
        for r in rows:
            if not r.ok:
                self._console.print(Text.assemble((r.scenario.name, "red"), f": {r.message}"))
        good = all(r.ok for r in rows)
        self._console.print(Text(footer(rows, stats, elapsed), style="bold green" if good else "bold red"))


def pick_view(as_json: bool, out: IO[str]) -> DemoView:
    """JSON when asked; a live table on a terminal when rich is installed; plain lines otherwise."""
    if as_json:
        return JsonView(out)
    if out.isatty() and rich_ok():
        return LiveView(out)
    return PlainView(out)
