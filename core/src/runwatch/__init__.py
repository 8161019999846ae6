"""runwatch: wait for remote runs the right way."""

from runwatch import text, webhooks
from runwatch._api import RunApi, StartedRun
from runwatch._attempts import start_attempt
from runwatch._auth import (
    AUTH_STYLES,
    Auth,
    BasicAuth,
    BearerAuth,
    ClientCredentials,
    HeaderAuth,
    Token,
    TokenAuth,
    TokenFunction,
    TokenProvider,
    auth_for,
)
from runwatch._budget import RedisBudget
from runwatch._clock import Clock
from runwatch._ended import EndedRuns, Outcomes, ended_runs, read_run_list, run_lists
from runwatch._errors import (
    AccessDenied,
    BadStatusPayload,
    ConfigurationError,
    IllegalTransition,
    InvalidURL,
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
from runwatch._handoff import Outcome, WaitResult, WaitSpec, wait_result
from runwatch._hooks import Hooks
from runwatch._inbox import WebhookInbox
from runwatch._machine import Anomaly, RunMachine, Verdict
from runwatch._policy import Policy
from runwatch._profile import Profile, builtin_profiles, load_profile
from runwatch._states import Phase, State
from runwatch._status import Progress, RunError, RunStatus
from runwatch._transport import (
    AiohttpTransport,
    BodyTooLarge,
    HttpxTransport,
    MockTransport,
    Request,
    Response,
    TransientError,
    Transport,
)
from runwatch._waiter import outcome, run_sync, wait_for_run, wait_for_run_sync, watch_run

__version__ = "0.1.0"

__all__ = [
    "AUTH_STYLES",
    "AccessDenied",
    "AiohttpTransport",
    "Anomaly",
    "Auth",
    "BadStatusPayload",
    "BasicAuth",
    "BearerAuth",
    "BodyTooLarge",
    "ClientCredentials",
    "Clock",
    "ConfigurationError",
    "EndedRuns",
    "HeaderAuth",
    "Hooks",
    "HttpxTransport",
    "IllegalTransition",
    "InvalidURL",
    "MockTransport",
    "Outcome",
    "Outcomes",
    "Phase",
    "Policy",
    "Profile",
    "ProfileError",
    "Progress",
    "RedisBudget",
    "Request",
    "Response",
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
    "Token",
    "TokenAuth",
    "TokenFunction",
    "TokenProvider",
    "TransientError",
    "Transport",
    "Verdict",
    "WaitOutcome",
    "WaitResult",
    "WaitSpec",
    "WaitTimeout",
    "WebhookInbox",
    "auth_for",
    "builtin_profiles",
    "ended_runs",
    "load_profile",
    "outcome",
    "read_run_list",
    "run_lists",
    "run_sync",
    "start_attempt",
    "text",
    "wait_for_run",
    "wait_for_run_sync",
    "wait_result",
    "watch_run",
    "webhooks",
]
