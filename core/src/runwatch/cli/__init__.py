"""The `runwatch` command: watch, serve, profiles, demo.

Exit codes are a contract scripts rely on: 0 succeeded, 1 failed, 2 cancelled, 3 timed out remotely,
4 partial success, 5 our deadline passed, 6 lost, 7 status unavailable, 8 no such run, 9 access denied,
10 illegal transition, 64 usage error, bad profile or configuration, 70 internal error or an answer we could
not interpret, 130 interrupted. 1 means the run failed and nothing else. Errors are one line on stderr,
never a traceback (set RUNWATCH_DEBUG=1 for one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from runwatch._errors import RunwatchError
from runwatch._urls import redact_text
from runwatch.cli._args import EX_USAGE, UsageError, build_parser

__all__ = ["main"]

EX_SOFTWARE = 70
EX_INTERRUPTED = 130
EX_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        return EX_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EX_BROKEN_PIPE
    except (UsageError, RunwatchError) as exc:
        _error(str(exc))
        return exc.exit_code
    except Exception as exc:
        if os.environ.get("RUNWATCH_DEBUG"):
            raise
        _error(f"internal error: {type(exc).__name__}: {exc} (set RUNWATCH_DEBUG=1 for a traceback)")
        return EX_SOFTWARE


def _dispatch(argv: list[str]) -> int:
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return EX_USAGE
    args = parser.parse_args(argv)
    if args.version:
        from runwatch import __version__

        print(f"runwatch {__version__}")
        return 0
    if args.command is None:
        raise UsageError("a command is required: watch, serve, profiles or demo (see 'runwatch --help')")
    if args.command == "watch":
        from runwatch.cli._watch import run_watch

        with _logs(("runwatch",), args.verbose):
            return asyncio.run(run_watch(args))
    if args.command == "profiles":
        from runwatch.cli._commands import run_profiles

        return run_profiles(args)
    if args.command == "serve":
        from runwatch.cli._commands import run_serve

        return run_serve(args)  # the server logs as servers do
    from runwatch.cli._demo import run_demo

    with _logs(("runwatch", "uvicorn"), args.verbose):
        return asyncio.run(run_demo(args))


@contextlib.contextmanager
def _logs(names: tuple[str, ...], verbose: bool) -> Iterator[None]:
    """These loggers go to stderr with -v, else nowhere (an error stays one line); restored afterwards."""
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        handler: logging.Handler = logging.NullHandler()
        if verbose:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("runwatch: %(levelname)s %(name)s: %(message)s"))
        saved.append((logger, handler, logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.propagate = False
        if verbose:
            logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, handler, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def _error(message: str) -> None:
    line = redact_text(" ".join(message.split()))  # one line, whatever the message holds, and no password
    with contextlib.suppress(BrokenPipeError, ValueError):
        sys.stdout.flush()
    print(f"runwatch: {line}", file=sys.stderr, flush=True)


def _silence_stdout() -> None:
    # Python flushes stdout at exit; a closed pipe would print a second error there.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
