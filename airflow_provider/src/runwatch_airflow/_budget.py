"""The request budget a `runwatch` connection names: a Redis connection of its own, a rate and a burst.

The store's address and password stay in Airflow's connections (and secrets backend): the `runwatch`
connection holds only the Redis connection's id, and the URL is built where the API is (in the triggerer for
a deferred wait), masked in logs, and never put in trigger kwargs, XCom or events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from airflow.sdk.log import amask_secret, mask_secret

import runwatch

if TYPE_CHECKING:
    from airflow.sdk import BaseHook, Connection

__all__ = ["BudgetSettings", "aread_budget", "budget_settings", "read_budget", "redis_url"]

REDIS_TYPES = ("redis", "rediss")  # the Redis provider's type; `rediss` from an AIRFLOW_CONN_ URI with TLS
# The Redis provider's TLS extras, passed on as redis-py URL options of the same names.
_TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")


@dataclass(frozen=True)
class BudgetSettings:
    """What a `runwatch` connection says about its budget: the Redis connection id, requests/s, burst."""

    owner: str  # the runwatch connection's id, for error messages
    redis_conn_id: str
    rate: Any
    burst: Any

    def budget(self, url: str) -> runwatch.RedisBudget:
        """The process's shared budget on the store at `url`; ValueError naming the connection if bad."""
        try:
            return runwatch.RedisBudget.shared(url, rate=_number(self.rate), burst=_number(self.burst))
        except runwatch.ConfigurationError as exc:
            raise ValueError(f"connection {self.owner!r}: {exc}") from None


def read_budget(hook: BaseHook, conn: Connection, extra: Mapping[str, Any]) -> runwatch.RedisBudget | None:
    """The budget `conn` names (its Redis connection read through `hook`), or None; for sync callers."""
    settings = budget_settings(conn, extra)
    if settings is None:
        return None
    store = hook.get_connection(settings.redis_conn_id)
    url = redis_url(store, store.extra_dejson)
    mask_secret(url)  # the password quoted in the URL may differ from the one Airflow masked
    return settings.budget(url)


async def aread_budget(
    hook: BaseHook, conn: Connection, extra: Mapping[str, Any]
) -> runwatch.RedisBudget | None:
    """`read_budget` without blocking the event loop (a trigger's, in the triggerer)."""
    settings = budget_settings(conn, extra)
    if settings is None:
        return None
    store = await get_async_connection(settings.redis_conn_id, hook)
    url = redis_url(store, await get_async_extra_dejson(store))
    await amask_secret(url)
    return settings.budget(url)


def budget_settings(conn: Connection, extra: Mapping[str, Any]) -> BudgetSettings | None:
    """The budget fields of a `runwatch` connection, or None when it names no budget store.

    Raises ValueError when only part of them is given (a rate without a store, or a store without a rate).
    """
    store, rate, burst = (_field(extra, name) for name in ("budget_conn_id", "budget_rate", "budget_burst"))
    if store is None:
        if rate is not None or burst is not None:
            raise ValueError(
                f"connection {conn.conn_id!r}: budget_rate and budget_burst need budget_conn_id "
                "(the id of a redis connection that holds the shared budget)"
            )
        return None
    if rate is None:
        raise ValueError(
            f"connection {conn.conn_id!r}: budget_conn_id needs budget_rate (requests per second, > 0)"
        )
    return BudgetSettings(conn.conn_id, str(store), rate, 1 if burst is None else burst)


def redis_url(store: Connection, extra: Mapping[str, Any]) -> str:
    """The `redis://` (or `rediss://`) URL of a Redis connection, read as Airflow's Redis provider reads it.

    Host, port (6379), login (a Redis 6 ACL user), password; the database from the extra `db`, else from
    the schema (`redis://...:6379/2` as an AIRFLOW_CONN_ URI), else 0; TLS with the extra `ssl` (and its
    `ssl_*` options). Raises ValueError for a connection of another type, without a host, or in cluster mode.
    """
    name = store.conn_id
    if store.conn_type not in REDIS_TYPES:
        raise ValueError(
            f"connection {name!r} is of type {store.conn_type!r}: the request budget needs a redis connection"
        )
    if not store.host:
        raise ValueError(f"connection {name!r} has no host: the request budget needs the Redis server's host")
    if _true(extra.get("cluster")):
        raise ValueError(f"connection {name!r} is a Redis Cluster: the request budget needs one Redis server")
    db = extra.get("db")
    if db in (None, ""):
        db = store.schema if store.schema and store.schema.isdigit() else 0
    tls = store.conn_type == "rediss" or _true(extra.get("ssl"))
    userinfo = ""
    if store.login or store.password:
        userinfo = f"{quote(store.login or '', safe='')}:{quote(store.password or '', safe='')}@"
    options = {key: str(extra[key]) for key in _TLS_OPTIONS if tls and extra.get(key) not in (None, "")}
    query = f"?{urlencode(options)}" if options else ""
    return f"{'rediss' if tls else 'redis'}://{userinfo}{store.host}:{store.port or 6379}/{db}{query}"


def _field(extra: Mapping[str, Any], name: str) -> Any:
    # As in _connection: a custom form field is stored under its plain name or as `extra__runwatch__<name>`.
    value = extra.get(name)
    if value in (None, ""):
        value = extra.get(f"extra__runwatch__{name}")
    return None if value in (None, "") else value


def _number(value: Any) -> Any:
    """A form's text as a number ("10" -> 10, "2.5" -> 2.5); anything else as given, for the budget to judge
    (it names what it refuses)."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    return value


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"))
