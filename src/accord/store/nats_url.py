"""The ``nats://`` URL of the NATS store, parsed into its options.

The URL and its query options are described in :mod:`accord.store.nats`, the backend this module
belongs to.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from accord import errors

_BUCKET = re.compile(r"[A-Za-z0-9_-]+")
_OPTIONS = frozenset(
    {"bucket", "creds", "connect_timeout", "timeout", "history", "inbox", "heartbeat"}
)
_INBOX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


@dataclass(frozen=True, slots=True)
class _Options:
    server: str  # what nats-py connects to: nats://host:port, no credentials
    url: str  # the URL we were given, with secrets masked
    user: str | None
    password: str | None
    token: str | None
    bucket: str
    inbox: str
    creds: Path | None
    connect_timeout: float
    timeout: float
    heartbeat: float
    history: int


def _parse_url(url: str) -> _Options:
    """``nats://u:p@host:4222?bucket=b&timeout=5`` -> options."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
        query = urllib.parse.parse_qs(
            parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)
        )
    except ValueError as exc:
        raise errors.InputError(f"invalid NATS URL {url!r}: {exc}") from exc
    if parts.scheme != "nats" or not parts.hostname or parts.path not in ("", "/"):
        raise errors.InputError(f"invalid NATS URL {url!r}: use nats://HOST[:PORT][?bucket=NAME]")
    unknown = sorted(set(query) - _OPTIONS)
    if unknown:
        raise errors.InputError(
            f"unknown option {unknown[0]!r} in NATS URL {url!r}: use {', '.join(sorted(_OPTIONS))}"
        )
    option = {name: values[-1] for name, values in query.items()}
    bucket = option.get("bucket", "accord")
    if not _BUCKET.fullmatch(bucket):
        raise errors.InputError(f"invalid bucket={bucket!r} in {url!r}: use [A-Za-z0-9_-]")
    inbox = option.get("inbox", "_INBOX")
    if not _INBOX.fullmatch(inbox):
        raise errors.InputError(f"invalid inbox={inbox!r} in {url!r}: use a subject like _INBOX")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    address = f"{host}:{port or 4222}"
    # user:password, or a token alone; percent-encoded in the URL like any userinfo.
    user = password = token = None
    masked = ""
    if parts.username is not None and parts.password is not None:
        user, password = urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password)
        masked = f"{parts.username}:***@"
    elif parts.username:
        token = urllib.parse.unquote(parts.username)
        masked = "***@"
    public_query = f"?{parts.query}" if parts.query else ""
    creds = option.get("creds")
    return _Options(
        server=f"nats://{address}",
        url=f"nats://{masked}{address}{public_query}",
        user=user,
        password=password,
        token=token,
        bucket=bucket,
        inbox=inbox,
        creds=None if creds is None else Path(creds),
        connect_timeout=_positive(option, "connect_timeout", 5.0, url),
        timeout=_positive(option, "timeout", 5.0, url),
        heartbeat=_positive(option, "heartbeat", 1.0, url),
        history=_history(option.get("history", "16"), url),
    )


def _positive(option: dict[str, str], name: str, default: float, url: str) -> float:
    text = option.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise errors.InputError(f"invalid {name}={text!r} in {url!r}: give seconds > 0")
    return value


def _history(text: str, url: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise errors.InputError(f"invalid history={text!r} in {url!r}: give 1 to 64")
    return int(text)
