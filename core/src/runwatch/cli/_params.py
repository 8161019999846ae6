"""A profile's URL parameters on the command line: `--param NAME=VALUE` and `RUNWATCH_PARAM_<NAME>`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from runwatch._profile import Profile

__all__ = ["ENV_PREFIX", "param_env", "parameter_names", "url_params"]

ENV_PREFIX = "RUNWATCH_PARAM_"


def param_env(name: str) -> str:
    """The environment variable that gives parameter `name` (`account_id` -> `RUNWATCH_PARAM_ACCOUNT_ID`)."""
    return f"{ENV_PREFIX}{name.upper()}"


def parameter_names(profile: Profile) -> list[str]:
    """Every parameter the profile's templates use or declare, in the order they appear."""
    templates = [profile.status_url]
    for spec in (profile.start, profile.cancel, profile.list_runs):
        if spec is not None:
            templates.append(spec.url)
    names = list(profile.parameters)
    for name in profile.required_parameters(*templates):
        if name not in names:
            names.append(name)
    return names


def url_params(
    profile: Profile, flags: Iterable[tuple[str, str]], environ: Mapping[str, str]
) -> dict[str, str]:
    """The parameters to fill the profile's URLs with: the environment's, then the flags' (flags win)."""
    names = parameter_names(profile)
    params = {name: environ[param_env(name)] for name in names if param_env(name) in environ}
    params.update(flags)
    return params
