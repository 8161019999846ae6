"""`prefect-runwatch`: the watcher process, the event source of runs that end, and the one-off setup of the
resume automation."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Sequence

from prefect.events.worker import EventsWorker

from prefect_runwatch.automations import AUTOMATION_NAME, create_resume_automation
from prefect_runwatch.run_ended import RunEndedEvents
from prefect_runwatch.watcher import Watcher
from runwatch import RunwatchError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefect-runwatch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    watcher = commands.add_parser("watcher", help="watch every suspended wait and resume each flow run")
    watcher.add_argument("--scan-interval", type=float, default=10.0, help="seconds between scans (10)")
    watcher.add_argument("--log-level", default="INFO", help="log level of the watcher's own log (INFO)")
    events = commands.add_parser("events", help="emit runwatch.run.ended once per remote run that ends")
    events.add_argument("--api-block", required=True, help="the RunStatusApi block whose runs to list")
    events.add_argument("--source", required=True, help="this source's name: labels events, names the cursor")
    events.add_argument(
        "--param",
        action="append",
        default=[],
        type=_param,
        metavar="NAME=VALUE",
        help="a filter value for the profile's list endpoint (repeatable)",
    )
    events.add_argument("--outcomes", choices=("any", "succeeded"), default="any", help="which ends (any)")
    events.add_argument("--interval", type=float, default=30.0, help="seconds between reads (30)")
    events.add_argument("--log-level", default="INFO", help="log level of the source's own log (INFO)")
    automation = commands.add_parser("automation", help="create the automation of the push path")
    automation.add_argument("--name", default=AUTOMATION_NAME, help="the automation's name")
    return parser


async def _watch(scan_interval: float) -> None:
    await _until_signalled(Watcher(scan_interval=scan_interval))


async def _until_signalled(service: Watcher | RunEndedEvents) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.run(stop)
    finally:
        await EventsWorker.drain_all(timeout=10)  # type: ignore[misc]  # awaitable in a loop


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "automation":
        print(asyncio.run(create_resume_automation(args.name)))
        return 0
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("prefect_runwatch").setLevel(args.log_level.upper())
    if args.command == "events":
        try:
            source = RunEndedEvents(
                args.api_block,
                args.source,
                params=dict(args.param),
                outcomes=args.outcomes,
                interval=args.interval,
            )
            asyncio.run(_until_signalled(source))
        except (ValueError, RunwatchError) as exc:  # a bad option, no such block, a profile with no list
            print(f"prefect-runwatch events: {exc}", file=sys.stderr)
            return 2
        return 0
    # This process is ours and may hold thousands of waits in one loop: rarer young collections let each
    # poll's objects die by reference counting, and frozen start-up objects stay out of full passes
    # (docs/transport.md: the longest loop stall at 10,000 waits went from ~300 ms to ~20-45 ms).
    gc.set_threshold(50_000, 20, 100)
    gc.freeze()
    asyncio.run(_watch(args.scan_interval))
    return 0


def _param(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"want NAME=VALUE, not {text!r}")
    return name, value


if __name__ == "__main__":
    sys.exit(main())
