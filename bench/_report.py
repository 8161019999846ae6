"""Tables (plain text for the terminal, Markdown for docs/) and the facts of the machine a run was made on."""

from __future__ import annotations

import math
import os
import platform
import resource
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata

__all__ = ["Table", "fmt", "load_average", "machine_facts"]

PACKAGES = (
    "runwatch",
    "aiohttp",
    "httpx",
    "httpcore",
    "httpx-aiohttp",
    "pydantic",
    "jmespath",
    "uvicorn",
    "starlette",
    "uvloop",
    "httptools",
)


def fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    """A number for a table: thousands separated, `-` for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}{unit}"


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: str) -> None:
        self.rows.append(list(cells))

    def text(self) -> str:
        widths = [max(len(r[i]) for r in [self.headers, *self.rows]) for i in range(len(self.headers))]

        def line(cells: list[str]) -> str:
            first = cells[0].ljust(widths[0])
            rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
            return "  ".join([first, *rest]).rstrip()

        out = [self.title, "=" * len(self.title), line(self.headers), line(["-" * w for w in widths])]
        out += [line(r) for r in self.rows]
        out += [f"  {n}" for n in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        out = [
            f"| {' | '.join(self.headers)} |",
            "| " + " | ".join(["---"] + ["---:"] * (len(self.headers) - 1)) + " |",
        ]
        out += [f"| {' | '.join(r)} |" for r in self.rows]
        if self.notes:
            out += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(out)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return f"{pages * size / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        return "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_facts() -> dict[str, str]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "Date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": f"{_cpu_model()}, {os.cpu_count()} cores ({usable} usable)",
        "Memory": _memory_gib(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        "Open files limit": f"{soft} soft / {hard} hard (cells raise the soft limit as needed)",
        "Packages": ", ".join(f"{p} {_version(p)}" for p in PACKAGES),
        "Load average at start": load_average(),
    }


def load_average() -> str:
    """The 1-minute load average and the number of CPUs: how much else the machine was doing."""
    try:
        return f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    except OSError:
        return "unknown"
