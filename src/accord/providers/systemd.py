"""``SystemdUnit``: a unit's file and drop-ins, its enablement, its running state, its restarts.

Files
    The unit file is ``etc/systemd/system/NAME`` and the drop-ins
    ``etc/systemd/system/NAME.d/*.conf``, under the run's first root. They are written as
    ``File`` writes (temp file, fsync, rename; a link at the path is replaced, a directory is
    refused). Only declared drop-ins are managed; one declared ``null`` must be absent.
Enablement
    ``systemctl --root=ROOT enable | disable | reenable | is-enabled``: offline, on the files,
    so it works on any directory tree (an image being built) and the same way on ``/``.
Runtime
    ``daemon-reload``, ``start``, ``stop``, ``restart`` and ``show`` talk to the running service
    manager, so they are made only when the first root is ``/`` and systemd runs there
    (``/run/systemd/system`` exists, as ``sd_booted(3)`` checks): the live machine. Under any
    other root, and on ``/`` in a container or CI job without systemd as init, the runtime
    state is not managed (files and enablement are, offline, as for an image), and plans and
    statuses say why. (A test that puts a stand-in ``systemctl`` on ``PATH`` builds
    ``SystemdUnitProvider(runtime=True)``; ``booted`` replaces the check of a running systemd.)
Apply, in this order
    Refuse what cannot work before changing anything (a directory in a file's way, a masked
    unit to enable or start). Write the files. Enable or disable (``reenable`` when the unit
    file changed, so that links follow its ``[Install]`` section). One ``daemon-reload`` if a
    file or link changed, or the manager reports ``NeedDaemonReload`` (``systemctl enable``
    itself reloads; with ``--root`` it does not). Then start or stop; a running unit whose own
    files changed (or were stale) is restarted when ``active: true``: it runs its old
    definition until then.
Refresh (``restart_on``)
    ``restart`` when ``active: true``, ``try-restart`` (only if it runs) when ``active`` is
    unmanaged. When a trigger fired, ``apply`` leaves starting and restarting to ``refresh``,
    so a unit is started or restarted once in a run, after the one ``daemon-reload``.
Snapshot and delete
    The snapshot keeps the prior unit file and drop-ins (content in the cache), the enablement
    and whether it ran. ``delete`` puts those back, or, without a prior, stops and disables the
    unit and removes its files: only what the spec manages.
"""

from __future__ import annotations

import contextlib
import hashlib
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from accord import errors
from accord.model.plan import Action, Change, FieldChange
from accord.model.specs import FileSpec, Spec, SystemdUnitSpec
from accord.providers import fsutil, priors, systemctl
from accord.providers.base import Context, Memo, Provider
from accord.providers.file import FileProvider, FileState

UNIT_DIR = "etc/systemd/system"
RUNNING = frozenset({"active", "reloading"})
STOPPED = frozenset({"inactive", "failed"})
ENABLED = frozenset({"enabled", "enabled-runtime"})
# is-enabled states of units that cannot be enabled themselves (no [Install] section, or an
# alias, a generated or transient unit): ``systemctl enable`` would print a hint and do nothing.
NOT_ENABLEABLE = frozenset({"static", "indirect", "generated", "transient", "alias"})

_files = FileProvider()


@dataclass(frozen=True, slots=True)
class Runtime:
    """What the running service manager says (``systemctl show``)."""

    active: str  # ActiveState: active, inactive, failed, activating, deactivating, reloading
    sub: str  # SubState: running, dead, exited, …
    since: str = ""  # ActiveEnterTimestamp; empty if it never ran
    load: str = "loaded"  # LoadState: loaded, not-found, masked, bad-setting, …
    stale: bool = False  # NeedDaemonReload: its files changed since the manager loaded them


@dataclass(frozen=True, slots=True)
class UnitState:
    """What observe found. Unmanaged parts are not looked at (``None``, or no entries)."""

    root: str  # the root the unit lives under, for messages
    unit: FileState | None = None  # the unit file, when ``content`` is managed (None: absent)
    dropins: tuple[tuple[str, FileState | None], ...] = ()  # each declared drop-in
    enabled: str | None = None  # ``is-enabled`` (or ``not-found``), when ``enabled`` is managed
    runtime: Runtime | None = None  # on the live system only
    offline: str = ""  # why the running state was not looked at (when it was not)


class SystemdUnitProvider(Provider[SystemdUnitSpec, UnitState]):
    kind: ClassVar[str] = "SystemdUnit"
    spec_model: ClassVar[type[Spec]] = SystemdUnitSpec
    refresh_verb: ClassVar[str] = "restart"

    def __init__(
        self, *, runtime: bool | None = None, booted: Callable[[], bool] = systemctl.booted
    ) -> None:
        """``runtime``: None manages the running state only when the first root is ``/`` and
        ``booted()`` says systemd runs here; True always (for a stand-in ``systemctl`` in tests:
        never with a real one under another root, it would start the host's units); False
        never. ``booted``: whether systemd is the running init (tests replace the check)."""
        self.runtime = runtime
        self.booted = booted

    def offline(self, ctx: Context) -> str:
        """Why this run does not manage the running service manager; empty when it does."""
        if self.runtime is not None:
            return "" if self.runtime else "turned off for this provider (runtime=False)"
        if ctx.roots.primary != Path("/"):
            return f"root {ctx.roots.primary} is not the live system"
        if not self.booted():
            return f"systemd is not running here, no {systemctl.BOOTED}"
        return ""

    def live(self, ctx: Context) -> bool:
        """Whether this run manages the running service manager."""
        return not self.offline(ctx)

    # -- observe and diff ---------------------------------------------------------------

    async def observe(self, ctx: Context, spec: SystemdUnitSpec) -> UnitState:
        root = str(ctx.roots.primary)
        unit = None
        if spec.content is not None:
            unit = await _files.observe(ctx, _unit_file(spec))
        dropins = [
            (name, await _files.observe(ctx, _dropin_file(spec, name, text)))
            for name, text in sorted(spec.dropins.items())
        ]
        enabled = None
        if spec.enabled is not None:
            enabled = await systemctl.is_enabled(ctx, root, spec.name)
        offline = self.offline(ctx)
        runtime = None if offline else await _runtime(ctx, spec.name)
        return UnitState(root, unit, tuple(dropins), enabled, runtime, offline)

    def diff(self, spec: SystemdUnitSpec, current: UnitState | None) -> Change:
        if current is None:  # observe always answers; kept total for callers that have nothing
            return Change(action=Action.CREATE, reason=f"{spec.name} has not been observed")
        fields: list[FieldChange] = []
        if spec.content is not None:
            fields += _file_fields("content", spec.content, current.unit)
        found = dict(current.dropins)
        for name, text in sorted(spec.dropins.items()):
            fields += _file_fields(f"dropins.{name}", text, found.get(name))
        if spec.enabled is not None and (current.enabled in ENABLED) != spec.enabled:
            desired = "enabled" if spec.enabled else "disabled"
            fields.append(FieldChange(field="enabled", current=current.enabled, desired=desired))
        runtime = current.runtime
        if runtime is not None:
            if spec.active is not None and not _active_ok(spec.active, runtime):
                desired = "active" if spec.active else "inactive"
                fields.append(FieldChange(field="active", current=_shown(runtime), desired=desired))
            rewritten = any(f.field.startswith(("content", "dropins")) for f in fields)
            if runtime.stale and not rewritten:  # a rewrite reloads anyway: say it once
                fields.append(
                    FieldChange(field="loaded", current="outdated (NeedDaemonReload)",
                                desired="current")
                )  # fmt: skip
        unmanaged = self._unmanaged(spec, current)
        if _absent(spec, current):
            reason = f"{spec.name}: " + (
                "the unit file is absent" if spec.content is not None else "none of it is in place"
            )
            return Change(action=Action.CREATE, reason=reason + unmanaged, fields=tuple(fields))
        if fields:
            reason = f"{spec.name} differs"
            return Change(action=Action.UPDATE, reason=reason + unmanaged, fields=tuple(fields))
        return Change.noop(_summary(spec, current) + unmanaged)

    def _unmanaged(self, spec: SystemdUnitSpec, current: UnitState) -> str:
        if current.runtime is not None or (spec.active is None and not spec.restart_on):
            return ""
        why = current.offline or f"root {current.root} is not the live system"
        return f" (running state not managed: {why})"

    # -- apply -----------------------------------------------------------------------------

    async def apply(self, ctx: Context, spec: SystemdUnitSpec, current: UnitState | None) -> None:
        if current is None:
            current = await self.observe(ctx, spec)
        _refuse(ctx, spec, current)
        unit_changed, files_changed = await _write(ctx, spec, current)
        linked = await _enablement(ctx, spec, current, unit_changed=unit_changed)
        runtime = current.runtime
        if not self.live(ctx) or runtime is None:
            return
        # Stale: the files changed and the manager was not reloaded (a run died in between),
        # so the running process has an old definition, as when the files change now.
        redefined = files_changed or runtime.stale
        if redefined or linked:
            await systemctl.run(ctx, "daemon-reload", record=True)
        if spec.active is True and not ctx.triggered:  # triggered: refresh restarts it, once
            if runtime.active not in RUNNING:
                await systemctl.run(ctx, "start", "--", spec.name, record=True)
            elif redefined:
                await systemctl.run(ctx, "restart", "--", spec.name, record=True)
        elif spec.active is False and runtime.active not in STOPPED:
            await systemctl.run(ctx, "stop", "--", spec.name, record=True)

    def triggers(self, ctx: Context, spec: SystemdUnitSpec) -> tuple[str, ...]:
        """``restart_on``, where this run manages the running state (else nothing to do)."""
        return spec.restart_on if self.live(ctx) else ()

    async def refresh(self, ctx: Context, spec: SystemdUnitSpec, current: UnitState | None) -> str:
        offline = self.offline(ctx)
        if offline:
            return f"not restarted ({offline})"
        runtime = current.runtime if current is not None else None
        running = runtime is None or runtime.active in RUNNING  # as observed before this apply
        if spec.active:  # restart starts a stopped unit: the one start of this run
            await systemctl.run(ctx, "restart", "--", spec.name, record=True)
            return "restarted" if running else "started"
        await systemctl.run(ctx, "try-restart", "--", spec.name, record=True)
        return "restarted" if running else "not running, not restarted"

    def details(self, spec: SystemdUnitSpec, current: UnitState | None) -> dict[str, Any]:
        if current is None:
            return {}
        found: dict[str, Any] = {}
        if current.runtime is not None:
            found["active"] = current.runtime.active
            found["sub"] = current.runtime.sub
            if current.runtime.since:
                found["since"] = current.runtime.since
        if current.enabled is not None:
            found["enabled"] = current.enabled
        return found

    # -- snapshot and delete -----------------------------------------------------------------

    async def snapshot(
        self, ctx: Context, spec: SystemdUnitSpec, current: UnitState | None
    ) -> Memo | None:
        if current is None:
            current = await self.observe(ctx, spec)
        unit = None
        if spec.content is not None:
            unit = priors.snapshot(ctx, _path(ctx, _unit_path(spec)))
        dropins = {
            name: priors.snapshot(ctx, _path(ctx, _dropin_path(spec, name)))
            for name in sorted(spec.dropins)
        }
        enabled = current.enabled in ENABLED if spec.enabled is not None else None
        active = None
        if spec.active is not None and current.runtime is not None:
            active = current.runtime.active in RUNNING
        # Whether the drop-in directory was there: delete removes it (if empty) only when not.
        # Without a snapshot it is left, as File leaves the parents it made.
        folder = None
        if spec.dropins:
            folder = priors.snapshot_type(_path(ctx, _dropin_dir(spec))) is not None
        if not (spec.dropins or unit or enabled or active):
            return None  # nothing there: delete removes what apply made
        return {"unit": unit, "dropins": dropins, "enabled": enabled, "active": active,
                "dropin_dir": folder}  # fmt: skip

    async def delete(self, ctx: Context, spec: SystemdUnitSpec, prior: Memo | None) -> str:
        current = await self.observe(ctx, spec)
        prior = prior or {}
        runtime = current.runtime if self.live(ctx) else None
        root = f"--root={current.root}"
        done: list[str] = []
        was_running, was_enabled = bool(prior.get("active")), bool(prior.get("enabled"))
        # Stop it if its running state is managed, or if its unit file goes (accord made it):
        # a process must not outlive the unit that describes it.
        made = spec.content is not None and prior.get("unit") is None
        stop = spec.active is not None or made
        if stop and not was_running and runtime is not None and runtime.active not in STOPPED:
            await systemctl.run(ctx, "stop", "--", spec.name, record=True)
            done.append("stopped")
        relinked = False
        if spec.enabled is not None and not was_enabled and current.enabled in ENABLED:
            await systemctl.run(ctx, root, "disable", "--", spec.name, record=True)
            done.append("disabled")
            relinked = True
        files = _restore_files(ctx, spec, prior)  # after disable: it needs the unit file
        done += files
        if spec.enabled is not None and was_enabled and current.enabled not in ENABLED:
            await systemctl.run(ctx, root, "enable", "--", spec.name, record=True)
            done.append("enabled again")
            relinked = True
        if runtime is not None:
            if files or relinked:
                await systemctl.run(ctx, "daemon-reload", record=True)
            if was_running and runtime.active not in RUNNING:
                await systemctl.run(ctx, "start", "--", spec.name, record=True)
                done.append("started again")
            elif was_running and files:  # it runs the definition this resource wrote
                await systemctl.run(ctx, "restart", "--", spec.name, record=True)
                done.append("restarted")
        return ", ".join(done) if done else "nothing to undo"


# -- paths and files ------------------------------------------------------------------------


def _unit_path(spec: SystemdUnitSpec) -> str:
    return f"{UNIT_DIR}/{spec.name}"


def _dropin_dir(spec: SystemdUnitSpec) -> str:
    return f"{UNIT_DIR}/{spec.name}.d"


def _dropin_path(spec: SystemdUnitSpec, name: str) -> str:
    return f"{_dropin_dir(spec)}/{name}"


def _unit_file(spec: SystemdUnitSpec) -> FileSpec:
    return FileSpec(path=_unit_path(spec), content=spec.content)


def _dropin_file(spec: SystemdUnitSpec, name: str, text: str | None) -> FileSpec:
    # A drop-in that must be absent is observed like any file: only its presence matters.
    return FileSpec(path=_dropin_path(spec, name), content=text or "")


def _path(ctx: Context, path: str) -> Path:
    return ctx.roots.resolve(path, resource=ctx.resource_id)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _file_fields(field: str, wanted: str | None, state: FileState | None) -> list[FieldChange]:
    """How a managed file differs: ``wanted`` is its content, or None for "absent"."""
    if wanted is None:
        if state is None:
            return []
        return [FieldChange(field=field, current=_what(state), desired="absent")]
    digest = _digest(wanted)
    if state is None:
        return [FieldChange(field=field, current="absent", desired=digest)]
    if state.type != "file":
        return [FieldChange(field=field, current=_what(state), desired=digest)]
    if state.sha256 != digest:
        return [FieldChange(field=field, current=_what(state), desired=digest)]
    return []


def _absent(spec: SystemdUnitSpec, current: UnitState) -> bool:
    """Whether nothing this spec puts in place is there: then the change is a ``create``.

    With ``content``, that is the unit file. Without (a unit a package installed), it is the
    declared drop-ins, the enablement and the running process, when they are managed.
    """
    if spec.content is not None:
        return current.unit is None
    found = dict(current.dropins)
    present = [found.get(name) is not None for name, text in spec.dropins.items() if text]
    if spec.enabled:
        present.append(current.enabled in ENABLED)
    if spec.active and current.runtime is not None:
        present.append(current.runtime.active in RUNNING)
    return bool(present) and not any(present)


def _what(state: FileState) -> str:
    if state.type != "file":
        return f"a {state.type}"
    return state.sha256 or f"{state.size} bytes"


def _summary(spec: SystemdUnitSpec, current: UnitState) -> str:
    """The reason of a no-op: what was found to match."""
    parts = []
    if spec.content is not None:
        parts.append(f"unit file matches sha256 {_digest(spec.content)[:12]}")
    if spec.dropins:
        count = len(spec.dropins)
        parts.append(f"{count} drop-in{'s' if count > 1 else ''} as declared")
    if current.enabled is not None:
        parts.append(current.enabled)
    if current.runtime is not None:
        parts.append(_shown(current.runtime))
    return f"{spec.name}: {', '.join(parts) or 'nothing is managed'}"


def _shown(runtime: Runtime) -> str:
    return f"{runtime.active} ({runtime.sub})" if runtime.sub else runtime.active


def _active_ok(active: bool, runtime: Runtime) -> bool:
    return runtime.active in RUNNING if active else runtime.active in STOPPED


async def _runtime(ctx: Context, name: str) -> Runtime:
    shown = await systemctl.show(ctx, name)
    return Runtime(
        active=shown.get("ActiveState", "unknown"),
        sub=shown.get("SubState", ""),
        since=shown.get("ActiveEnterTimestamp", ""),
        load=shown.get("LoadState", ""),
        stale=shown.get("NeedDaemonReload", "no") == "yes",
    )


def _refuse(ctx: Context, spec: SystemdUnitSpec, current: UnitState) -> None:
    """Refuse, before anything changes, what apply cannot do."""
    where = f"resource {ctx.resource_id!r}"
    paths = [(_unit_path(spec), current.unit)] if spec.content is not None else []
    paths += [(_dropin_path(spec, name), state) for name, state in current.dropins]
    for path, state in paths:
        if state is not None and state.type == "directory":
            raise errors.PermanentError(f"{where}: {path} is a directory; refusing to replace it")
    if spec.content is not None:
        return  # writing the unit file replaces a mask (a link to /dev/null at that path)
    masked = current.enabled == "masked" or (
        current.runtime is not None and current.runtime.load == "masked"
    )
    if masked and (spec.enabled or spec.active):
        raise errors.PermanentError(
            f"{where}: {spec.name} is masked; unmask it (systemctl unmask) or declare its content"
        )


async def _write(ctx: Context, spec: SystemdUnitSpec, current: UnitState) -> tuple[bool, bool]:
    """Write the unit file and drop-ins that differ; (unit file changed, any file changed)."""
    unit_changed = False
    if spec.content is not None and _file_fields("content", spec.content, current.unit):
        await _files.apply(ctx, _unit_file(spec), current.unit)
        unit_changed = True
    changed = unit_changed
    found = dict(current.dropins)
    for name, text in sorted(spec.dropins.items()):
        state = found.get(name)
        if not _file_fields(name, text, state):
            continue
        if text is not None:
            await _files.apply(ctx, _dropin_file(spec, name, text), state)
        else:
            path = _path(ctx, _dropin_path(spec, name))
            ctx.roots.recheck(path, resource=ctx.resource_id)
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise fsutil.os_error(exc, "remove", path) from exc
        changed = True
    return unit_changed, changed


async def _enablement(
    ctx: Context, spec: SystemdUnitSpec, current: UnitState, *, unit_changed: bool
) -> bool:
    """Enable or disable as declared; whether links changed."""
    if spec.enabled is None:
        return False
    state = current.enabled
    if unit_changed:  # the new file may add or change its [Install] section
        state = await systemctl.is_enabled(ctx, current.root, spec.name)
    root = f"--root={current.root}"
    if not spec.enabled:
        if state not in ENABLED:
            return False
        await systemctl.run(ctx, root, "disable", "--", spec.name, record=True)
        return True
    if state in NOT_ENABLEABLE or state == "masked":
        why = "it is masked" if state == "masked" else "it has no [Install] section to follow"
        raise errors.PermanentError(
            f"resource {ctx.resource_id!r}: {spec.name} cannot be enabled: is-enabled says "
            f"{state!r} ({why})"
        )
    if state == "enabled" and not unit_changed:
        return False
    verb = "reenable" if state == "enabled" else "enable"  # reenable: links follow [Install]
    await systemctl.run(ctx, root, verb, "--", spec.name, record=True)
    return True


def _restore_files(ctx: Context, spec: SystemdUnitSpec, prior: Memo) -> list[str]:
    """Put back the prior unit file and drop-ins, or remove them; notes of what changed."""
    kept = prior.get("dropins") or {}
    managed = [(_unit_path(spec), prior.get("unit"), "unit file")] if spec.content else []
    managed += [
        (_dropin_path(spec, name), kept.get(name), f"drop-in {name}") for name in spec.dropins
    ]
    changed: list[str] = []
    for path, memo, what in managed:
        full = _path(ctx, path)
        ctx.roots.recheck(full, resource=ctx.resource_id)
        if _is(full, memo):
            continue
        changed.append(f"{what} {priors.restore(ctx, full, memo)}")
    if spec.dropins and prior.get("dropin_dir") is False:  # apply made it: remove it if empty
        with contextlib.suppress(OSError):
            _path(ctx, _dropin_dir(spec)).rmdir()
    return changed


def _is(path: Path, memo: Memo | None) -> bool:
    """Whether ``path`` already is as ``memo`` (a ``priors`` snapshot, None: absent) says."""
    if memo is None:
        return priors.snapshot_type(path) is None
    if memo.get("type") != "file" or priors.snapshot_type(path) != "file":
        return False
    st = path.stat()
    same_owner = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (
        memo["mode"],
        memo["uid"],
        memo["gid"],
    )
    return same_owner and hashlib.sha256(path.read_bytes()).hexdigest() == memo["sha256"]
