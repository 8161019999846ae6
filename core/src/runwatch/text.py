"""Text from a remote, made inert before it is shown.

A run's id, state words, progress message or error text come from the remote API. Printed raw, a newline
starts a line of the remote's choosing (which a CI runner may read as a command: GitHub Actions'
`::error ...`), and an escape sequence drives the terminal (`ESC[2J` clears it, BEL rings). Wherever runwatch
shows such text (CLI lines, the live view, Airflow and Prefect logs, Prefect artifacts), it passes it
through `inert()` first. Machine formats (`--json`, trigger events, XCom) keep the exact text: JSON escapes
control characters itself.
"""

from __future__ import annotations

import re

__all__ = ["inert"]

# C0 and C1 controls and DEL; the Unicode line and paragraph separators (which some viewers break lines at);
# the bidirectional overrides and isolates, which can make a line read differently from what it holds.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(found: re.Match[str]) -> str:
    char = found.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def inert(text: str) -> str:
    """`text` with every control character written as an escape (`\\n`, `\\x1b`, `\\u2028`), on one line.

    Printable text, non-ASCII letters included, is left as it is; so is the backslash, so the result is
    meant to be read, not parsed back.
    """
    return _UNSAFE.sub(_escape, text)
