"""Pinned diff behaviour of ``SystemdUnit``: desired + observed → expected change.

Pure data cases, as for the file-like kinds (``test_file_cases``): no disk, no systemctl. Each
row is (desired spec, observed state) and the expected (action, names of the differing fields
in order, a substring of the reason).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from accord.model.plan import Action, FieldChange
from accord.model.specs import SystemdUnitSpec
from accord.providers.file import FileState
from accord.providers.systemd import Runtime, SystemdUnitProvider, UnitState

UNIT = "[Service]\nExecStart=/usr/bin/app\n"
CONF = "[Service]\nNice=5\n"
UNIT_SHA = hashlib.sha256(UNIT.encode()).hexdigest()
CONF_SHA = hashlib.sha256(CONF.encode()).hexdigest()
OTHER_SHA = hashlib.sha256(b"other").hexdigest()

P = SystemdUnitProvider()
NOOP, CREATE, UPDATE = Action.NOOP, Action.CREATE, Action.UPDATE
RUNNING = Runtime("active", "running", "Mon 2025-01-06 10:00:00 UTC")
DEAD = Runtime("inactive", "dead")
FAILED = Runtime("failed", "failed")
NOT_BOOTED = "systemd is not running here, no /run/systemd/system"


def spec(**fields: Any) -> SystemdUnitSpec:
    return SystemdUnitSpec(**({"name": "app.service"} | fields))


def file(sha256: str | None = UNIT_SHA, **state: Any) -> FileState:
    return FileState(**({"type": "file", "size": 10, "sha256": sha256, "mode": 0o644} | state))


def seen(**state: Any) -> UnitState:
    """What observe reports on the live system (root "/") unless told otherwise."""
    return UnitState(**({"root": "/"} | state))


@dataclass(frozen=True)
class Row:
    spec: SystemdUnitSpec
    observed: UnitState
    action: Action
    fields: tuple[str, ...]
    reason: str


ROWS: dict[str, Row] = {
    # The unit file
    "file/absent": Row(spec(content=UNIT), seen(), CREATE, ("content",), "unit file is absent"),
    "file/same": Row(
        spec(content=UNIT), seen(unit=file()), NOOP, (), f"unit file matches sha256 {UNIT_SHA[:12]}"
    ),
    "file/other": Row(
        spec(content=UNIT), seen(unit=file(OTHER_SHA)), UPDATE, ("content",), "differs"
    ),
    "file/other-size-unhashed": Row(
        spec(content=UNIT), seen(unit=file(None, size=3)), UPDATE, ("content",), "differs"
    ),
    "file/masked-link": Row(
        spec(content=UNIT), seen(unit=FileState("symlink")), UPDATE, ("content",), "differs"
    ),
    "file/unmanaged": Row(spec(), seen(unit=file(OTHER_SHA)), NOOP, (), "app.service:"),
    # Drop-ins: declared ones only; null means absent
    "dropin/absent": Row(
        spec(dropins={"a.conf": CONF}),
        seen(dropins=(("a.conf", None),)),
        CREATE,
        ("dropins.a.conf",),
        "none of it is in place",
    ),
    "dropin/same": Row(
        spec(dropins={"a.conf": CONF}),
        seen(dropins=(("a.conf", file(CONF_SHA)),)),
        NOOP,
        (),
        "1 drop-in as declared",
    ),
    "dropin/other": Row(
        spec(content=UNIT, dropins={"a.conf": CONF}),
        seen(unit=file(), dropins=(("a.conf", file(OTHER_SHA)),)),
        UPDATE,
        ("dropins.a.conf",),
        "differs",
    ),
    "dropin/must-go": Row(
        spec(content=UNIT, dropins={"old.conf": None}),
        seen(unit=file(), dropins=(("old.conf", file(OTHER_SHA)),)),
        UPDATE,
        ("dropins.old.conf",),
        "differs",
    ),
    "dropin/gone-already": Row(
        spec(content=UNIT, dropins={"old.conf": None}),
        seen(unit=file(), dropins=(("old.conf", None),)),
        NOOP,
        (),
        "1 drop-in as declared",
    ),
    # Enablement (is-enabled as systemctl --root says it)
    "enabled/disabled": Row(
        spec(content=UNIT, enabled=True),
        seen(unit=file(), enabled="disabled"),
        UPDATE,
        ("enabled",),
        "differs",
    ),
    "enabled/not-found": Row(
        spec(enabled=True), seen(enabled="not-found"), CREATE, ("enabled",), "none of it"
    ),
    "enabled/yes": Row(spec(enabled=True), seen(enabled="enabled"), NOOP, (), "enabled"),
    "enabled/static-wants-off": Row(
        spec(enabled=False), seen(enabled="static"), NOOP, (), "static"
    ),
    "enabled/static-wants-on": Row(
        spec(content=UNIT, enabled=True),
        seen(unit=file(), enabled="static"),
        UPDATE,
        ("enabled",),
        "differs",
    ),
    "enabled/masked-wants-off": Row(spec(enabled=False), seen(enabled="masked"), NOOP, (), ""),
    "disabled/enabled": Row(
        spec(enabled=False), seen(enabled="enabled"), UPDATE, ("enabled",), "differs"
    ),
    "disabled/runtime-enabled": Row(
        spec(enabled=False), seen(enabled="enabled-runtime"), UPDATE, ("enabled",), "differs"
    ),
    # Running state (live only)
    "active/dead": Row(spec(active=True), seen(runtime=DEAD), CREATE, ("active",), "none of it"),
    "active/running": Row(spec(active=True), seen(runtime=RUNNING), NOOP, (), "active (running)"),
    "active/failed": Row(
        spec(content=UNIT, active=True),
        seen(unit=file(), runtime=FAILED),
        UPDATE,
        ("active",),
        "differs",
    ),
    "active/activating": Row(
        spec(content=UNIT, active=True),
        seen(unit=file(), runtime=Runtime("activating", "start")),
        UPDATE,
        ("active",),
        "differs",
    ),
    "stopped/running": Row(
        spec(content=UNIT, active=False),
        seen(unit=file(), runtime=RUNNING),
        UPDATE,
        ("active",),
        "differs",
    ),
    "stopped/failed-counts-as-stopped": Row(
        spec(active=False), seen(runtime=FAILED), NOOP, (), "failed (failed)"
    ),
    "active/unmanaged": Row(spec(content=UNIT), seen(unit=file(), runtime=DEAD), NOOP, (), "dead"),
    # The manager's view of the files
    "loaded/stale": Row(
        spec(content=UNIT),
        seen(unit=file(), runtime=Runtime("active", "running", stale=True)),
        UPDATE,
        ("loaded",),
        "differs",
    ),
    "loaded/stale-and-rewritten-says-it-once": Row(
        spec(content=UNIT),
        seen(unit=file(OTHER_SHA), runtime=Runtime("active", "running", stale=True)),
        UPDATE,
        ("content",),
        "differs",
    ),
    # Another root: the running state is not looked at, and the reason says so
    "other-root/active-not-managed": Row(
        spec(content=UNIT, active=True),
        seen(root="/srv/image", unit=file()),
        NOOP,
        (),
        "running state not managed: root /srv/image is not the live system",
    ),
    "other-root/restart_on-not-managed": Row(
        spec(content=UNIT, restart_on=["config"]),
        seen(root="/srv/image"),
        CREATE,
        ("content",),
        "not the live system",
    ),
    "other-root/files-only-says-nothing-of-it": Row(
        spec(content=UNIT), seen(root="/srv/image", unit=file()), NOOP, (), UNIT_SHA[:12]
    ),
    # On / where systemd is not the running init (a container, a CI job): the same, saying why
    "not-booted/active-not-managed": Row(
        spec(content=UNIT, enabled=True, active=True),
        seen(unit=file(), enabled="enabled", offline=NOT_BOOTED),
        NOOP,
        (),
        "running state not managed: systemd is not running here",
    ),
    "not-booted/files-and-enablement-still-managed": Row(
        spec(content=UNIT, enabled=True, restart_on=["config"]),
        seen(unit=file(OTHER_SHA), enabled="disabled", offline=NOT_BOOTED),
        UPDATE,
        ("content", "enabled"),
        "running state not managed: systemd is not running here",
    ),
    # Everything at once, in field order
    "everything-differs": Row(
        spec(content=UNIT, dropins={"a.conf": CONF, "b.conf": None}, enabled=True, active=True),
        seen(
            unit=file(OTHER_SHA),
            dropins=(("a.conf", None), ("b.conf", file(OTHER_SHA))),
            enabled="disabled",
            runtime=DEAD,
        ),
        UPDATE,
        ("content", "dropins.a.conf", "dropins.b.conf", "enabled", "active"),
        "app.service differs",
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_diff(row: Row) -> None:
    change = P.diff(row.spec, row.observed)
    assert change.action is row.action, change.describe()
    assert tuple(f.field for f in change.fields) == row.fields, change.describe()
    assert row.reason in change.reason, change.reason
    assert P.diff(row.spec, row.observed) == change


def test_fields_say_what_is_there_and_what_is_wanted() -> None:
    change = P.diff(
        spec(content=UNIT, dropins={"old.conf": None}, enabled=True, active=True),
        seen(unit=None, dropins=(("old.conf", file(OTHER_SHA)),), enabled="static", runtime=FAILED),
    )
    assert change.fields == (
        FieldChange(field="content", current="absent", desired=UNIT_SHA),
        FieldChange(field="dropins.old.conf", current=OTHER_SHA, desired="absent"),
        FieldChange(field="enabled", current="static", desired="enabled"),
        FieldChange(field="active", current="failed (failed)", desired="active"),
    )


def test_details_are_the_units_active_state_and_enablement() -> None:
    assert P.details(spec(), seen(runtime=RUNNING, enabled="enabled")) == {
        "active": "active", "sub": "running", "since": RUNNING.since, "enabled": "enabled",
    }  # fmt: skip
    assert P.details(spec(), seen(runtime=DEAD)) == {"active": "inactive", "sub": "dead"}
    assert P.details(spec(), seen(root="/srv/image")) == {}


BAD_SPECS = {
    "not a unit name": {"name": "app"},
    "unknown unit type": {"name": "app.device"},
    "a path": {"name": "../app.service"},
    "a template cannot run": {"name": "app@.service", "active": True},
    "a template is not restarted": {"name": "app@.service", "restart_on": ["x"]},
    "stopped and restarted": {"name": "app.service", "active": False, "restart_on": ["x"]},
    "an empty unit file masks": {"name": "app.service", "content": ""},
    "drop-ins end in .conf": {"name": "app.service", "dropins": {"a.txt": "x"}},
    "drop-ins are names": {"name": "app.service", "dropins": {"../a.conf": "x"}},
    "unknown field": {"name": "app.service", "enable": True},
}


@pytest.mark.parametrize("fields", BAD_SPECS.values(), ids=BAD_SPECS.keys())
def test_specs_refuse_what_systemd_would(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SystemdUnitSpec(**fields)


def test_names_systemd_accepts_are_accepted() -> None:
    for name in ("-.mount", "app@web.service", "dev-disk-by\\x2dlabel-data.mount", "a.timer"):
        assert SystemdUnitSpec(name=name).references() == {}
    assert SystemdUnitSpec(name="a.service", restart_on=["c"]).references() == {
        "restart_on": ("c",)
    }
