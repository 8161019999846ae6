"""`runwatch profiles` and `runwatch serve`."""

from __future__ import annotations

import argparse
import json
import socket
import sys

from runwatch._errors import RunwatchError
from runwatch._profile import builtin_profiles, load_profile
from runwatch.cli._args import UsageError, read_token

__all__ = ["run_profiles", "run_serve"]


def run_profiles(args: argparse.Namespace) -> int:
    """List the built-in profiles: name and description (JSON lines with --json)."""
    profiles = [load_profile(name) for name in builtin_profiles()]
    if args.json:
        for p in profiles:
            row = {
                "name": p.name,
                "description": p.description,
                "status_url": p.status_url,
                "long_poll": p.long_poll is not None,
                "start": p.start is not None,
                "cancel": p.cancel is not None,
            }
            print(json.dumps(row), flush=True)
        return 0
    width = max((len(p.name) for p in profiles), default=0)
    for p in profiles:
        print(f"{p.name:<{width}}  {p.description}".rstrip())
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Run the reference server in the foreground until Ctrl-C."""
    token = read_token(args.token_env)
    from runwatch.cli._demo import import_server

    server = import_server()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise UsageError(f"--host {args.host}: the reference server binds loopback addresses only")
    _check_free(args.host, args.port)
    auth = " (bearer token required)" if token else ""
    print(
        f"runwatch: reference server on http://{args.host}:{args.port}{auth}; Ctrl-C stops it",
        file=sys.stderr,
    )
    try:
        server.serve(host=args.host, port=args.port, token=token)
    except ValueError as exc:  # a host that is not loopback
        raise UsageError(f"--host {args.host}: {exc}") from None
    return 0


def _check_free(host: str, port: int) -> None:
    """Fail in one line, before uvicorn starts, when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise AddressInUse(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


class AddressInUse(RunwatchError):
    """`runwatch serve` cannot bind its address."""

    exit_code = 69  # EX_UNAVAILABLE
