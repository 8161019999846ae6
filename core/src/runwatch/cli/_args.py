"""The command line: argparse, with usage errors that exit 64 (EX_USAGE) instead of argparse's 2."""

from __future__ import annotations

import argparse
import os
import re
from typing import Any, NoReturn

__all__ = ["EX_USAGE", "UsageError", "build_parser", "parse_header", "read_token"]

EX_USAGE = 64


class UsageError(Exception):
    """The command line is wrong. `str(exc)` is one readable line."""

    exit_code = EX_USAGE


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of printing usage and exiting 2.

    No abbreviations: argparse would take `--token SECRET` for `--token-env SECRET`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        message = re.sub(
            r"invalid choice: .*? \(choose", "invalid choice (choose", message
        )  # may be a secret
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        """As argparse's, but the values of unknown arguments are not printed: one may be a secret."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            flags = [e.split("=", 1)[0] for e in extras if e.startswith("-")]
            values = len(extras) - len(flags) + sum("=" in e for e in extras if e.startswith("-"))
            said = " ".join([*flags, *([f"and {values} value(s), not shown"] if values else [])])
            hint = ": there is no --token flag, put the token in a variable and pass --token-env VAR"
            self.error(f"unrecognized arguments: {said}{hint if '--token' in flags else ''}")
        return parsed


def _seconds(text: str) -> float:
    """A positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _seconds_or_zero(text: str) -> float:
    """A number of seconds, zero allowed."""
    if text.strip() in ("0", "0.0"):
        return 0.0
    return _seconds(text)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is out of range 0-65535")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def parse_header(text: str) -> tuple[str, str]:
    """`'K: V'` as (K, V)."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
        raise UsageError(f"--header expects 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _param(text: str) -> tuple[str, str]:
    """`NAME=VALUE` as (NAME, VALUE)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONVENTIONAL_ENV_NAME = re.compile(
    r"[A-Z_][A-Z0-9_]{0,63}"
)  # API_TOKEN: safe to print; tokens rarely look so


def _env_name(text: str) -> str:
    """The name of an environment variable. Anything else may be the secret itself: refused, not echoed."""
    if not _ENV_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            "expects the NAME of an environment variable (letters, digits, _) that holds the token, "
            "not the token itself (the value given is not shown)"
        )
    return text


def read_token(var: str | None) -> str | None:
    """The token from the environment variable named by --token-env (never from argv)."""
    if var is None:
        return None
    token = os.environ.get(var)
    if not token:
        # Any other "name" may be a token given by mistake (ghp_...): it is not printed.
        shown = var if _CONVENTIONAL_ENV_NAME.fullmatch(var) else "it names"
        raise UsageError(f"--token-env: the environment variable {shown} is not set or empty")
    return token


def build_parser() -> argparse.ArgumentParser:
    """The `runwatch` parser with its four subcommands."""
    parser = _Parser(
        prog="runwatch",
        description="Watch remote runs until they end. Exit codes: 0 succeeded, 1 failed (the run, and "
        "nothing else), 2 cancelled, 3 timed out remotely, 4 partial success, 5 our deadline passed, "
        "6 lost (heartbeat), 7 status unavailable (unreadable: rate limits, errors, bodies that do not "
        "parse), 8 no such run, 9 access denied, 10 illegal transition (--on-illegal raise), 64 usage "
        "error, bad profile or configuration, 70 an unexpected answer or internal error, 130 interrupted.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log what the waiter does to stderr")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    _add_watch(subs, common)
    _add_serve(subs, common)
    _add_profiles(subs, common)
    _add_demo(subs, common)
    return parser


def _add_watch(subs: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    """`runwatch watch RUN ...`."""
    watch = subs.add_parser(
        "watch",
        parents=[common],
        help="wait for one run to end",
        description=("Wait for one run to end. RUN is a full status URL, or a run id with --base-url."),
    )
    _add_what_to_watch(watch)
    _add_wait_policy(watch)
    watch.add_argument(
        "--ca-bundle", metavar="FILE", help="verify the API's TLS certificate with this CA bundle (PEM)"
    )
    watch.add_argument("--json", action="store_true", help="one JSON status per change on stdout")


def _add_what_to_watch(watch: argparse.ArgumentParser) -> None:
    """Which run, on which API, with which credentials and parameters."""
    watch.add_argument("run", metavar="RUN", help="a status URL, or a run id (with --base-url)")
    watch.add_argument("--base-url", metavar="URL", help="the API's base URL, for a run id")
    watch.add_argument(
        "--profile",
        metavar="NAME|FILE",
        default="standard",
        help="a built-in profile or a .json/.toml file (default: standard)",
    )
    watch.add_argument(
        "--param",
        metavar="NAME=VALUE",
        type=_param,
        action="append",
        default=[],
        help="a URL parameter of the profile, e.g. --param account_id=7 (repeatable; also from the "
        "environment as RUNWATCH_PARAM_<NAME>; 'runwatch profiles NAME' lists a profile's parameters)",
    )
    watch.add_argument(
        "--token-env", metavar="VAR", type=_env_name, help="read the API token from this environment variable"
    )
    watch.add_argument(
        "--header", metavar="'K: V'", action="append", default=[], help="an extra request header (repeatable)"
    )


def _add_wait_policy(watch: argparse.ArgumentParser) -> None:
    """The wait's `Policy`, flag by flag (units: seconds)."""
    watch.add_argument("--timeout", metavar="S", type=_seconds, help="give up after S seconds (exit 5)")
    watch.add_argument("--interval", metavar="S", type=_seconds, help="first poll interval (default 2)")
    watch.add_argument(
        "--max-interval", metavar="S", type=_seconds, help="longest poll interval (default 60)"
    )
    watch.add_argument(
        "--heartbeat-timeout",
        metavar="S",
        type=_seconds,
        help="a RUNNING run whose heartbeat is older than S is lost (exit 6)",
    )
    watch.add_argument(
        "--long-poll",
        metavar="S",
        type=_seconds,
        help="hold each request up to S seconds where the API long-polls",
    )
    watch.add_argument(
        "--unavailable-after",
        metavar="S",
        type=_seconds_or_zero,
        help="status unreadable this long is an error (exit 7; default 300)",
    )
    watch.add_argument(
        "--partial-success",
        choices=("succeed", "fail", "partial"),
        default="partial",
        help="PARTIAL_SUCCESS exits 0, 1 or 4 (default: partial, exit 4)",
    )
    watch.add_argument(
        "--on-illegal",
        choices=("ignore", "raise"),
        default="ignore",
        help="a move the state machine forbids (FAILED -> RUNNING) is logged and ignored, or exits 10",
    )


def _add_serve(subs: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    """`runwatch serve`."""
    serve = subs.add_parser("serve", parents=[common], help="run the reference server in the foreground")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8765, help="port to bind (default 8765)")
    serve.add_argument(
        "--token-env",
        metavar="VAR",
        type=_env_name,
        help="require this environment variable's value as a bearer token",
    )


def _add_profiles(subs: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    """`runwatch profiles [NAME]`."""
    profiles = subs.add_parser(
        "profiles",
        parents=[common],
        help="list the built-in profiles, or show one whole",
        description="Without NAME, list the built-in profiles; with NAME (a built-in name or a file), show "
        "that profile whole, with its URL parameters.",
    )
    profiles.add_argument("name", metavar="NAME", nargs="?", help="a built-in profile or a .json/.toml file")
    profiles.add_argument("--json", action="store_true", help="JSON: one object per profile, or the profile")


def _add_demo(subs: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    """`runwatch demo`."""
    demo = subs.add_parser("demo", parents=[common], help="watch a dozen runs through every lifecycle")
    demo.add_argument(
        "--runs",
        metavar="N",
        type=_count,
        help="how many runs (default: one per scenario; more repeat the scenarios)",
    )
    demo.add_argument("--json", action="store_true", help="JSON lines instead of tables")
