"""`runwatch watch`: one run, watched by the core waiter, shown by a display."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pydantic import ValidationError

from runwatch._api import RunApi
from runwatch._auth import Auth, BasicAuth, BearerAuth
from runwatch._handoff import WaitSpec, wait_result
from runwatch._hooks import Hooks
from runwatch._policy import Policy
from runwatch._profile import load_profile
from runwatch._urls import origin_of, split_userinfo
from runwatch.cli._args import UsageError, parse_header, read_token
from runwatch.cli._display import Display, pick_display
from runwatch.cli._params import param_env, url_params

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
    is_url = run.startswith(("http://", "https://"))
    if is_url:
        run, userinfo = split_userinfo(run)
        if userinfo is not None:
            auth = auth or BasicAuth(*userinfo)
        base_url = base_url or origin_of(run)
    profile = load_profile(args.profile)
    params = url_params(profile, args.param, os.environ)
    if not is_url:
        if not args.base_url and "{base_url}" in profile.status_url:
            raise UsageError(f"RUN {run!r} is not a URL: give --base-url, or the run's full status URL")
        missing = [name for name in profile.required_parameters(profile.status_url) if name not in params]
        if missing:
            needs = ", ".join(f"--param {name}=... (or {param_env(name)})" for name in missing)
            raise UsageError(f"profile {profile.name!r} needs {needs} to make the URL of run {run!r}")
    verify: bool | str = args.ca_bundle or True
    api = RunApi(base_url, profile, auth=auth, headers=headers, params=params, verify=verify)
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
    """Watch RUN to its end; the exit code is the outcome's (raised as its error, which main reports)."""
    api, run = make_api(args)
    spec = WaitSpec(run=run, policy=make_policy(args).to_dict())
    display: Display = pick_display(args.json, sys.stdout, api)
    with display:
        hooks = Hooks(
            on_change=display.change, on_request=display.requested, on_unreadable=display.unreadable
        )
        result = await wait_result(api, spec, hooks=hooks)
        display.ended(result)
    result.raise_for_outcome()
    return 0
