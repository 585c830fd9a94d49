"""The JetStream messages the NATS store reads: headers, status, sequence, time, deletes.

Direct-get answers, KV messages delivered to a watch and JetStream API replies (errors raised as
``_ApiError``). Part of the backend described in :mod:`accord.store.nats`.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from nats.aio.msg import Msg

from accord import errors

_DELETE_OPERATIONS = frozenset({"DEL", "PURGE"})
_DELETE_MARKERS = frozenset({"MaxAge", "Purge", "Remove"})  # Nats-Marker-Reason, 2.11+


class _ApiError(Exception):
    """An error answer of the JetStream API (translated by ``NatsStore._translated``)."""

    def __init__(self, code: int, err_code: int | None, description: str) -> None:
        super().__init__(f"{description} (code {code}, err_code {err_code})")
        self.code = code
        self.err_code = err_code


def _api_reply(msg: Msg) -> dict[str, Any]:
    if _status(msg) is not None:
        raise _ApiError(int(_status(msg) or 0), None, _describe(msg))
    try:
        reply: dict[str, Any] = json.loads(msg.data)
    except ValueError as exc:
        raise _ApiError(0, None, f"unreadable JetStream answer {msg.data[:200]!r}") from exc
    error = reply.get("error")
    if error:
        raise _ApiError(
            int(error.get("code", 0)), error.get("err_code"), error.get("description", "")
        )
    return reply


def _header(msg: Msg, name: str) -> str | None:
    return None if msg.headers is None else msg.headers.get(name)


def _status(msg: Msg) -> str | None:
    return _header(msg, "Status")


def _describe(msg: Msg) -> str:
    return f"{_status(msg)} {_header(msg, 'Description') or ''}".strip()


def _sequence(msg: Msg) -> int:
    """The stream sequence of a direct-get answer."""
    sequence = _header(msg, "Nats-Sequence")
    if sequence is None:
        raise errors.StoreError(f"a direct get answer without Nats-Sequence: {msg.headers}")
    return int(sequence)


def _time(msg: Msg) -> float:
    """The publish time of a direct-get answer (RFC 3339 with nanoseconds) as a Unix time."""
    stamp = _header(msg, "Nats-Time-Stamp") or ""
    whole, _, rest = stamp.rstrip("Z").partition(".")
    try:
        moment = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC)
        fraction = float(f"0.{rest}") if rest.isdigit() else 0.0
    except ValueError as exc:
        raise errors.StoreError(f"a direct get answer with a bad time stamp {stamp!r}") from exc
    return moment.timestamp() + fraction


def _is_delete(msg: Msg) -> bool:
    operation = _header(msg, "KV-Operation")
    if operation is not None:
        return operation in _DELETE_OPERATIONS
    return _header(msg, "Nats-Marker-Reason") in _DELETE_MARKERS
