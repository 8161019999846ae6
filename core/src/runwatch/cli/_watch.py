"""`runwatch watch`: one run, watched by the core waiter, shown by a display."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import ValidationError

from runwatch._api import RunApi
from runwatch._auth import Auth, BasicAuth, BearerAuth
from runwatch._errors import RunwatchError
from runwatch._hooks import Hooks
from runwatch._policy import Policy
from runwatch._status import RunStatus
from runwatch._urls import origin_of, split_userinfo
from runwatch._waiter import wait_for_run
from runwatch.cli._args import UsageError, parse_header, read_token
from runwatch.cli._display import Display, pick_display

__all__ = ["make_api", "make_policy", "run_watch"]


def make_api(args: argparse.Namespace) -> tuple[RunApi, str]:
    """The RunApi the flags describe, and the run to watch (a URL's `user:password@` taken out of it).

    The token comes from the environment only. Credentials go only to the origin of --base-url or, without
    it, of RUN's URL; a `user:password@` in RUN's URL is sent as Basic auth.
    """
    token = read_token(args.token_env)
    headers = dict(parse_header(h) for h in args.header)
    run, base_url = args.run, args.base_url
    auth: Auth | None = BearerAuth(token) if token else None
    if run.startswith(("http://", "https://")):
        run, userinfo = split_userinfo(run)
        if userinfo is not None:
            auth = auth or BasicAuth(*userinfo)
        base_url = base_url or origin_of(run)
    verify: bool | str = args.ca_bundle or True
    api = RunApi(base_url, args.profile, auth=auth, headers=headers, verify=verify)
    if (
        not run.startswith(("http://", "https://"))
        and not args.base_url
        and "{base_url}" in api.profile.status_url
    ):
        raise UsageError(f"RUN {run!r} is not a URL: give --base-url, or the run's full status URL")
    return api, run


def make_policy(args: argparse.Namespace) -> Policy:
    """The Policy the flags describe; unset flags keep the core's defaults."""
    changes: dict[str, Any] = {"partial_success": args.partial_success, "on_illegal": args.on_illegal}
    for flag in (
        "timeout",
        "interval",
        "max_interval",
        "heartbeat_timeout",
        "long_poll",
        "unavailable_after",
    ):
        value = getattr(args, flag)
        if value is not None:
            changes[flag] = value
    interval = changes.get("interval", Policy().interval)
    if args.max_interval is None:
        changes["max_interval"] = max(Policy().max_interval, interval)
    elif args.max_interval < interval:
        raise UsageError(f"--max-interval ({args.max_interval:g}) is less than the interval ({interval:g})")
    try:
        return Policy(**changes)
    except ValidationError as exc:  # pragma: no cover - the flags' types already keep values in range
        raise UsageError(f"bad wait policy: {exc.errors()[0]['msg']}") from None


async def run_watch(args: argparse.Namespace) -> int:
    """Watch RUN to its end; the exit code is the outcome's."""
    api, run = make_api(args)
    policy = make_policy(args)
    display: Display = pick_display(args.json, sys.stdout, api)
    with display:
        try:
            hooks = Hooks(
                on_change=display.change, on_request=display.requested, on_unreadable=display.unreadable
            )
            final: RunStatus = await wait_for_run(api, run, policy=policy, hooks=hooks)
        except RunwatchError as exc:
            display.failed(exc)
            raise
        display.succeeded(final)
    return 0
