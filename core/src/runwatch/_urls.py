"""URLs as runwatch handles them: origins, and credentials kept out of every URL that is shown or stored."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["origin_of", "redact", "redact_text", "split_userinfo"]


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of an absolute URL, lower-cased, default ports dropped (RFC 6454)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port
    except ValueError:
        port = None
    shown = "" if port is None or port == default else f":{port}"
    return f"{parts.scheme.lower()}://{host}{shown}"


def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without `user:password@`, and that (user, password) pair (percent-decoded), if any."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, (unquote(user), unquote(password))


def redact(url: str) -> str:
    """The URL with any password shown as `***` (`https://user:***@host/...`)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, sep, _ = userinfo.partition(":")
    netloc = f"{user}:***@{hostport}" if sep else f"***@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/\s:@]*)(?P<password>:[^/\s@]*)?@")


def redact_text(text: str) -> str:
    """`text` with the secret of every URL in it shown as `***`, as `redact` shows one URL."""
    if "@" not in text:
        return text
    return _USERINFO.sub(
        lambda m: f"{m['scheme']}{m['user']}:***@" if m["password"] else f"{m['scheme']}***@", text
    )
