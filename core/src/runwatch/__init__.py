"""runwatch: wait for remote runs the right way."""

from runwatch import webhooks
from runwatch._api import Auth, BasicAuth, BearerAuth, HeaderAuth, RunApi, StartedRun
from runwatch._attempts import generation_key, start_attempt
from runwatch._errors import (
    AccessDenied,
    BadStatusPayload,
    IllegalTransition,
    ProfileError,
    RunCancelled,
    RunFailed,
    RunLost,
    RunNotFound,
    RunPartiallySucceeded,
    RunTimedOut,
    RunwatchError,
    StatusUnavailable,
    WaitOutcome,
    WaitTimeout,
)
from runwatch._inbox import WebhookInbox
from runwatch._machine import Anomaly, RunMachine, Verdict
from runwatch._policy import Policy
from runwatch._profile import Profile, builtin_profiles, load_profile
from runwatch._states import Phase, State
from runwatch._status import Progress, RunError, RunStatus
from runwatch._waiter import outcome, run_sync, wait_for_run, wait_for_run_sync, watch_run

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "Anomaly",
    "Auth",
    "BadStatusPayload",
    "BasicAuth",
    "BearerAuth",
    "HeaderAuth",
    "IllegalTransition",
    "Phase",
    "Policy",
    "Profile",
    "ProfileError",
    "Progress",
    "RunApi",
    "RunCancelled",
    "RunError",
    "RunFailed",
    "RunLost",
    "RunMachine",
    "RunNotFound",
    "RunPartiallySucceeded",
    "RunStatus",
    "RunTimedOut",
    "RunwatchError",
    "StartedRun",
    "State",
    "StatusUnavailable",
    "Verdict",
    "WaitOutcome",
    "WaitTimeout",
    "WebhookInbox",
    "builtin_profiles",
    "generation_key",
    "load_profile",
    "outcome",
    "run_sync",
    "start_attempt",
    "wait_for_run",
    "wait_for_run_sync",
    "watch_run",
    "webhooks",
]
