"""`runwatch profiles` and `runwatch serve`."""

from __future__ import annotations

import argparse
import json
import sys

from runwatch._errors import RunwatchError
from runwatch._profile import Profile, builtin_profiles, load_profile
from runwatch.cli._args import UsageError, read_token
from runwatch.cli._params import param_env, parameter_names

__all__ = ["run_profiles", "run_serve"]


def run_profiles(args: argparse.Namespace) -> int:
    """List the built-in profiles: name and description (JSON lines with --json); or show one whole."""
    if args.name is not None:
        return _show_profile(load_profile(args.name), args.json)
    profiles = [load_profile(name) for name in builtin_profiles()]
    if args.json:
        for p in profiles:
            row = {
                "name": p.name,
                "description": p.description,
                "source": p.source,
                "status_url": p.status_url,
                "parameters": parameter_names(p),
                "long_poll": p.long_poll is not None,
                "start": p.start is not None,
                "cancel": p.cancel is not None,
                "list_runs": p.list_runs is not None,
            }
            print(json.dumps(row), flush=True)
        return 0
    width = max((len(p.name) for p in profiles), default=0)
    for p in profiles:
        print(f"{p.name:<{width}}  {p.description}".rstrip())
    return 0


def _show_profile(profile: Profile, as_json: bool) -> int:
    """One profile: a readable head (what, where from, its parameters), then the profile itself as JSON."""
    data = profile.to_dict()
    if as_json:
        print(json.dumps(data, indent=2), flush=True)
        return 0
    needed = profile.required_parameters(profile.status_url)
    print(f"{profile.name}: {profile.description}".rstrip(": "))
    if profile.source:
        print(f"source: {profile.source}")
    if profile.aliases:
        print(f"also known as: {', '.join(profile.aliases)}")
    names = parameter_names(profile)
    if names:
        print("parameters (--param NAME=VALUE, or the environment variable shown):")
        width = max(len(n) for n in names)
        env_width = max(len(param_env(n)) for n in names)
        for name in names:
            spec = profile.parameters.get(name)
            notes = [spec.description] if spec and spec.description else []
            if spec and spec.default is not None:
                notes.append(f"default {spec.default!r}")
            elif name in needed:
                notes.append("needed for a run id")
            print(f"  {name:<{width}}  {param_env(name):<{env_width}}  {'; '.join(notes)}".rstrip())
    print(json.dumps(data, indent=2), flush=True)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Run the reference server in the foreground until Ctrl-C."""
    token = read_token(args.token_env)
    from runwatch.cli._demo import import_server

    server = import_server()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise UsageError(f"--host {args.host}: the reference server binds loopback addresses only")
    try:  # bound here, so that a taken port fails in one line and port 0 is shown as the port it became
        sock = server.listen(args.host, args.port)
    except OSError as exc:
        raise AddressInUse(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    shown = f"[{args.host}]" if ":" in args.host else args.host
    auth = " (bearer token required)" if token else ""
    print(
        f"runwatch: reference server on http://{shown}:{sock.getsockname()[1]}{auth}; Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve(host=args.host, port=args.port, token=token, sock=sock)
    except ValueError as exc:  # a host that is not loopback
        raise UsageError(f"--host {args.host}: {exc}") from None
    return 0


class AddressInUse(RunwatchError):
    """`runwatch serve` cannot bind its address."""

    exit_code = 69  # EX_UNAVAILABLE
