"""Stores: the persistence seam. ``open_store(url)`` picks the backend from the URL scheme.

``sqlite:///path/to/accord.db`` (default, embedded), ``nats://host:4222?bucket=accord`` (a fleet
on NATS JetStream, see :mod:`accord.store.nats`), ``memory://`` (tests, one process).
"""

from __future__ import annotations

import urllib.parse

from accord import errors
from accord.store.base import Entry, Op, Record, Store, WatchEvent

__all__ = ["Entry", "Op", "Record", "Store", "WatchEvent", "display_url", "open_store"]

STORE_ENV = "ACCORD_STORE"
"""The environment variable ``--store`` falls back to: keeps a URL with a password out of
``ps`` (argv is world-readable; a process's environment is not)."""


async def open_store(url: str) -> Store:
    """Open the store named by ``url``; raise ``InputError`` for an unknown scheme."""
    scheme = url.split(":", 1)[0]
    if scheme == "memory":
        from accord.store import memory

        return memory.MemoryStore()
    if scheme == "sqlite":
        from accord.store import sqlite

        return await sqlite.SqliteStore.open(url)
    if scheme == "nats":
        from accord.store import nats

        return await nats.NatsStore.open(url)
    raise errors.InputError(
        f"unknown store URL {url!r}: use sqlite:///PATH, nats://HOST:PORT or memory://"
    )


def display_url(url: str) -> str:
    """``url`` with any password or token masked, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0] + ":***" if ":" in userinfo else "***"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}@{host}"))
