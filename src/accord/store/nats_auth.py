"""Per-node NATS credentials: a nats-server ``authorization`` block for a fleet.

:func:`authorization_config` writes the ``authorization { users = [...] }`` block of a
nats-server configuration in which the control plane (the admin user) may do everything, and
each node's user may only:

* read its own desired state ``fleet.desired.<node>`` (get and watch), its own status
  ``fleet.status.<node>`` (to compare-and-set it), its own ``nodes.<node>`` and every
  ``lifecycles.<name>``;
* write its own status ``fleet.status.<node>``, and nothing else.

Node ids are encoded with :func:`accord.store.base.key_part`, as :mod:`accord.store.keys` does.

Subjects a node user may publish to (``<b>`` the bucket, ``<k>`` the encoded node id):

``$JS.API.DIRECT.GET.KV_<b>.$KV.<b>.<key>`` for each readable key
    A KV get. With ``allow_direct`` (accord's buckets have it) the key is part of the API
    subject, so the permission names the key exactly. The generic ``$JS.API.DIRECT.GET.KV_<b>``
    (key in the JSON body) and ``$JS.API.STREAM.MSG.GET.KV_<b>`` are *not* granted: they would
    read any key.
``$KV.<b>.fleet.status.<k>``
    A KV put / compare-and-set of the node's status (``Nats-Expected-Last-Subject-Sequence``
    header); the stream's ack comes back on the node's inbox.
``$JS.API.CONSUMER.CREATE.KV_<b>.*.$KV.<b>.fleet.desired.<k>``
    A watch of the node's desired key: creating a named consumer with the filter subject in
    the API subject (server 2.9+). The server rejects a request whose body's
    ``filter_subject`` differs from the subject's, so this cannot watch anything else. The
    old form ``$JS.API.CONSUMER.CREATE.KV_<b>`` (filter only in the body) is not granted: it
    would allow a watch of every key.
``$JS.API.STREAM.INFO.KV_<b>``, ``...EVENTS_<b>``, ``...OBJ_<b>``
    What clients check when they bind to the bucket (nats-py ``js.key_value()``,
    :meth:`accord.store.nats.NatsStore.open`). Residual: a node learns the streams'
    configuration and counters (message counts, first/last sequence), never a value.
``$JS.FC.KV_<b>.>``
    Flow-control and stall replies of a push watch. Residual: a node could send flow-control
    replies to other consumers of the bucket (they only unblock delivery; no data flows back).

Subjects a node user may subscribe to: ``<inbox>.>`` where ``<inbox>`` is
:func:`node_inbox_prefix` (``_INBOX_<k>``). Every reply (gets, acks, consumer info) and every
watch delivery goes to the client's inbox, so a shared ``_INBOX.>`` grant would let node A
subscribe to ``_INBOX.>`` and read B's replies. A node must therefore connect with its own
inbox prefix: nats-py ``connect(..., inbox_prefix=node_inbox_prefix(node))``.

Nothing else: no other node's keys, not even its own publish counter ``fleet.sequence.<node>``
(the control plane's; the agent orders envelopes by the sequence signed inside them), no
deleting or purging, no consumer deletion (watch consumers are ephemeral and vanish after their
inactivity threshold), no event log or blob access. Grant those separately if an agent needs
them (e.g. direct gets on ``OBJ_<b>`` for artifacts).

Production: plain passwords in the server config are for tests and small setups. Prefer nkeys
(``users = [{nkey: "U...", permissions: {...}}]``, created with ``nk -gen user``; the node keeps
the seed) or decentralised JWT auth (``nsc add user --allow-pub ... --allow-sub ...`` with the
same subjects, the node connecting with ``?creds=/path/node.creds``). The permission blocks are
the same whichever way a user authenticates. At least store bcrypt hashes (``nats server passwd``)
instead of the plain passwords this module writes.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping

from accord import errors
from accord.store import keys
from accord.store.base import key_part

__all__ = [
    "authorization_config",
    "generate_password",
    "node_inbox_prefix",
    "node_permissions",
]

_BUCKET = re.compile(r"[A-Za-z0-9_-]+")  # as accord.store.nats accepts in ?bucket=


def node_inbox_prefix(node: str) -> str:
    """The inbox prefix node ``node`` must connect with (its user may subscribe nowhere else)."""
    return f"_INBOX_{key_part(node)}"


def generate_password() -> str:
    """A random password (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


def node_permissions(node: str, *, bucket: str) -> dict[str, dict[str, list[str]]]:
    """The ``permissions`` of ``node``'s user; see the module docstring for each subject."""
    kv_stream = f"KV_{bucket}"
    kv = f"$KV.{bucket}."
    desired = kv + keys.desired_key(node)
    status = kv + keys.status_key(node)
    readable = [
        desired,
        status,
        f"{kv}nodes.{key_part(node)}",  # accord.lifecycle.nodes.node_key (a layer above us)
        f"{kv}lifecycles.*",  # accord.lifecycle.nodes.lifecycle_key: one encoded level
    ]

    publish = [f"$JS.API.DIRECT.GET.{kv_stream}.{subject}" for subject in readable]
    publish += [
        status,
        f"$JS.API.CONSUMER.CREATE.{kv_stream}.*.{desired}",
        f"$JS.API.STREAM.INFO.{kv_stream}",
        f"$JS.API.STREAM.INFO.EVENTS_{bucket}",
        f"$JS.API.STREAM.INFO.OBJ_{bucket}",
        f"$JS.FC.{kv_stream}.>",
    ]
    return {
        "publish": {"allow": publish},
        "subscribe": {"allow": [node_inbox_prefix(node) + ".>"]},
    }


def authorization_config(
    nodes: Mapping[str, str],
    *,
    admin_user: str,
    admin_password: str,
    bucket: str,
) -> str:
    """A nats-server ``authorization { users = [...] }`` block for the admin and ``nodes``.

    Args:
        nodes: node id -> password. A node's user name is its id encoded with ``key_part``.
        admin_user: the control plane's user, which may publish and subscribe to anything.
        admin_password: its password.
        bucket: the accord bucket (``?bucket=`` in the store URL).

    Raises:
        InputError: an empty name or password, or two users with the same name.
    """
    if not _BUCKET.fullmatch(bucket):
        raise errors.InputError(f"invalid bucket {bucket!r}: use [A-Za-z0-9_-]")
    if not admin_user or not admin_password:
        raise errors.InputError("the admin user and password must not be empty")
    users: list[dict[str, object]] = [{"user": admin_user, "password": admin_password}]
    names = {admin_user}
    for node, password in nodes.items():
        user = key_part(node)
        if not node or not password:
            raise errors.InputError(f"node {node!r}: empty node id or password")
        if user in names:
            raise errors.InputError(f"node {node!r}: user name {user!r} is already taken")
        names.add(user)
        users.append(
            {
                "user": user,
                "password": password,
                "permissions": node_permissions(node, bucket=bucket),
            }
        )
    # JSON is valid nats-server configuration syntax, and quotes every subject safely.
    lines = ["authorization {", "  users = ["]
    for entry in users:
        lines.append(f"    {json.dumps(entry)}")
    lines += ["  ]", "}", ""]
    return "\n".join(lines)
