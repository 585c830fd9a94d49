"""Pinned diff behaviour of ``Container``: desired + observed → expected change.

Pure data cases, no engine: each row is (desired spec, observed state) and the expected
(action, names of the differing fields in order, a substring of the reason). Below them, what
the definition hash does and does not cover.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

from accord.model.plan import Action, FieldChange
from accord.model.specs import ContainerSpec
from accord.providers.container import (
    HIDDEN,
    ContainerProvider,
    ContainerState,
    canonical,
    canonical_json,
    spec_hash,
)

P = ContainerProvider()
NOOP, CREATE, UPDATE = Action.NOOP, Action.CREATE, Action.UPDATE
IMAGE = "registry.example/web@sha256:" + "5e" * 32
IMAGE_ID = "ab" * 32
OTHER_ID = "cd" * 32


def web(**fields: Any) -> ContainerSpec:
    return ContainerSpec.model_validate(
        {"name": "web", "image": IMAGE, "env": {"TOKEN": "s3cret"}} | fields
    )


def seen(made_from: ContainerSpec | None = None, **state: Any) -> ContainerState:
    """A container as observe reports it: created by accord from ``made_from`` (default
    ``web()``), running since a fixed time, its image still what the reference names."""
    spec = made_from or web()
    values: dict[str, Any] = {
        "runtime": "docker",
        "id": "f0" * 32,
        "running": True,
        "status": "running",
        "started_at": "2025-01-01T00:00:02.000000001Z",
        "restarts": 0,
        "image_id": IMAGE_ID,
        "spec_hash": spec_hash(spec),
        "spec": canonical_json(spec),
        "image_now": IMAGE_ID,
    }
    return ContainerState(**(values | state))


@dataclass(frozen=True)
class Row:
    spec: ContainerSpec
    observed: ContainerState | None
    action: Action
    fields: tuple[str, ...]
    reason: str


OLD = web(image="registry.example/web@sha256:" + "01" * 32, env={"TOKEN": "old"})

ROWS: dict[str, Row] = {
    "absent": Row(web(), None, CREATE, (), "container web is absent"),
    "converged": Row(
        web(),
        seen(),
        NOOP,
        (),
        "matches its definition ("
        + spec_hash(web())[:12]
        + "); running since 2025-01-01T00:00:02.000000001Z, 0 restarts",
    ),
    "converged-counts-restarts": Row(web(), seen(restarts=1), NOOP, (), "running since"),
    "converged-stopped": Row(
        web(running=False),
        seen(running=False, status="exited"),
        NOOP,
        (),
        "stopped, as declared",
    ),
    "not-accords": Row(
        web(),
        seen(spec_hash=None, spec=None),
        UPDATE,
        ("spec_hash",),
        "accord did not create it",
    ),
    "stopped": Row(
        web(), seen(running=False, status="exited"), UPDATE, ("running",), "web is stopped"
    ),
    "should-stop": Row(web(running=False), seen(), UPDATE, ("running",), "web is running"),
    "image-changed": Row(
        web(),
        seen(OLD),
        UPDATE,
        ("image", "env.TOKEN"),
        "container web is replaced: its definition changed",
    ),
    "command-added": Row(
        web(command=["serve"]), seen(), UPDATE, ("command",), "definition changed"
    ),
    "ports-changed": Row(
        web(ports=[{"container_port": 80, "host_port": 8080}]),
        seen(),
        UPDATE,
        ("ports",),
        "definition changed",
    ),
    "restart-changed": Row(web(restart="always"), seen(), UPDATE, ("restart",), "changed"),
    "replace-and-stop": Row(
        web(restart="no", running=False), seen(), UPDATE, ("restart", "running"), "changed"
    ),
    "unreadable-label": Row(
        web(),
        seen(spec_hash="00" * 32, spec="{not json"),
        UPDATE,
        ("spec_hash",),
        "definition changed",
    ),
    "reference-moved": Row(
        web(), seen(image_now=OTHER_ID), UPDATE, ("image_id",), "its image changed"
    ),
    "reference-not-here": Row(web(), seen(image_now=None), NOOP, (), "matches its definition"),
    "stopped-and-moved": Row(
        web(),
        seen(running=False, image_now=OTHER_ID),
        UPDATE,
        ("image_id", "running"),
        "its image changed",
    ),
    "never-started": Row(
        web(), seen(running=False, status="created", started_at=None), UPDATE, ("running",), ""
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_diff(row: Row) -> None:
    change = P.diff(row.spec, row.observed)
    assert change.action is row.action, change.describe()
    assert tuple(f.field for f in change.fields) == row.fields, change.describe()
    assert row.reason in change.reason, change.reason
    assert P.diff(row.spec, row.observed) == change


def test_env_changes_name_the_variable_never_the_value() -> None:
    before = web(env={"TOKEN": "old", "GONE": "x", "SAME": "1"})
    after = web(env={"TOKEN": "new", "ADDED": "y", "SAME": "1"})
    fields = P.diff(after, seen(before)).fields
    assert fields == (
        FieldChange(field="env.ADDED", current=None, desired=HIDDEN),
        FieldChange(field="env.GONE", current=HIDDEN, desired=None),
        FieldChange(field="env.TOKEN", current=HIDDEN, desired=f"{HIDDEN} (changed)"),
    )
    assert "old" not in P.diff(after, seen(before)).describe()


def test_image_field_shows_both_references() -> None:
    (image, *_) = P.diff(web(), seen(OLD)).fields
    assert image == FieldChange(field="image", current=OLD.image, desired=IMAGE)


def test_the_plan_says_an_unmanaged_container_is_refused() -> None:
    change = P.diff(web(), seen(spec_hash=None))
    assert "apply refuses to replace it" in change.reason


# The definition hash


def test_running_and_runtime_do_not_define_the_container() -> None:
    assert spec_hash(web()) == spec_hash(web(running=False, runtime="podman"))


def test_order_of_ports_volumes_and_env_does_not_matter() -> None:
    ports = [
        {"container_port": 80, "host_port": 8080},
        {"container_port": 53, "host_port": 53, "protocol": "udp"},
    ]
    volumes = [{"source": "/srv/a", "target": "/a"}, {"source": "cache", "target": "/c"}]
    one = web(ports=ports, volumes=volumes, env={"A": "1", "B": "2"})
    other = web(ports=ports[::-1], volumes=volumes[::-1], env={"B": "2", "A": "1"})
    assert spec_hash(one) == spec_hash(other)


def test_unset_and_empty_fields_are_left_out_so_new_optional_fields_change_nothing() -> None:
    assert canonical(web(env={})) == {"image": IMAGE, "restart": "unless-stopped"}
    assert spec_hash(web(env={}, command=None, ports=[])) == spec_hash(web(env={}))


def test_the_default_restart_policy_is_written_out() -> None:
    assert spec_hash(web()) == spec_hash(web(restart="unless-stopped"))
    assert spec_hash(web()) != spec_hash(web(restart="no"))


@pytest.mark.parametrize(
    "change",
    [
        {"image": "registry.example/web:2"},
        {"command": ["serve", "--debug"]},
        {"env": {"TOKEN": "other"}},
        {"ports": [{"container_port": 80, "host_port": 8081}]},
        {"ports": [{"container_port": 80, "host_port": 8080, "host_ip": "127.0.0.1"}]},
        {"volumes": [{"source": "/srv/a", "target": "/a", "read_only": True}]},
        {"restart": "always"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_every_defining_field_is_in_the_hash(change: dict[str, Any]) -> None:
    assert spec_hash(web(**change)) != spec_hash(web())


def test_observed_states_compare_by_value() -> None:
    assert seen() == dataclasses.replace(seen())
    assert seen() != dataclasses.replace(seen(), restarts=3)
