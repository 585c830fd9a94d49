"""``Container``: one named container in podman or docker, created from a staged image.

What defines a container — ``image``, ``command``, ``env``, ``ports``, ``volumes`` and
``restart`` — is written in canonical JSON (sorted keys, ports and volumes in a fixed order,
empty and unset fields left out, so a later optional field does not re-create every container)
and hashed. Both go onto the container as labels when accord creates it: ``io.accord.spec-hash``
is what ``diff`` compares, ``io.accord.spec`` lets the plan name the fields that changed and
lets ``delete`` put a prior container back.

``observe`` is ``container inspect`` (labels, ``State.Running``/``StartedAt``, ``RestartCount``,
the image id) plus ``image inspect`` of the spec's image, to see whether the reference now names
another image than the container runs. ``diff``: absent → create; the hash or the image differ
→ replace; only ``running`` differs → start or stop; otherwise a no-op that says since when it
runs. A container of that name that accord did not create (no hash label) is refused, never
replaced: accord could not put it back.

``stage`` pulls the image unless ``image inspect`` finds it; ``staged()`` is "the image is
here". ``apply`` never pulls (it creates with ``--pull=never`` and fails, naming ``accord
stage``, if the image is missing): nothing inside a maintenance window waits on a registry. A
tag is therefore resolved once per machine, at its first stage; pin a digest.

``apply`` replaces by creating the new container under a temporary name first, then stopping and
removing the old one and renaming the new one into place: a definition the engine rejects (a
missing bind source, a bad option) leaves the old container running. Env values and the spec
label reach the engine through ``--env-file`` and ``--label-file`` in a private temp directory,
never through argv, where any local user could read them. Bind-mount sources are paths like any
other in a manifest: confined to the roots.

``delete`` stops and removes a container accord created (never its image or volumes), or with a
snapshot re-creates the prior one from its ``io.accord.spec`` label. Containers accord did not
create are left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pydantic

from accord import errors
from accord.model.plan import Action, Change, FieldChange
from accord.model.specs import ContainerPort, ContainerSpec, ContainerVolume, Spec
from accord.providers import container_engine
from accord.providers.base import Context, Memo, Provider
from accord.providers.container_engine import Engine

HASH_LABEL = "io.accord.spec-hash"
SPEC_LABEL = "io.accord.spec"
HASH_VERSION = b"accord.container.v1\n"  # bump when the mapping from spec to engine changes
DEFINING = ("image", "command", "env", "ports", "volumes", "restart")
NEXT = ".accord-next"  # suffix of the temporary name a replacement is created under
HIDDEN = "<hidden>"  # env values never appear in plans


@dataclass(frozen=True, slots=True)
class ContainerState:
    """What ``container inspect`` (and ``image inspect`` of the spec's image) said."""

    runtime: str
    id: str
    running: bool
    status: str  # created | running | exited | paused | …
    started_at: str | None  # None: never started
    restarts: int
    image_id: str  # the image the container was created from (hex, no "sha256:")
    spec_hash: str | None  # the io.accord.spec-hash label; None: accord did not create it
    spec: str | None  # the io.accord.spec label: canonical JSON of what defined it
    image_now: str | None  # the image the spec's reference names here now; None: not here


def canonical(spec: ContainerSpec) -> dict[str, Any]:
    """The fields that define the container, in a fixed order and shape (see the docstring)."""
    data = spec.model_dump(mode="json", include=set(DEFINING), exclude_none=True)
    data["ports"] = sorted(
        data.get("ports", []),
        key=lambda p: (p["protocol"], p["container_port"], p.get("host_ip") or "", p["host_port"]),
    )
    data["volumes"] = sorted(data.get("volumes", []), key=lambda v: v["target"])
    return {key: value for key, value in data.items() if value not in ([], {})}


def canonical_json(spec: ContainerSpec) -> str:
    return json.dumps(canonical(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_hash(spec: ContainerSpec) -> str:
    """The sha256 of the canonical definition: what the hash label holds."""
    return hashlib.sha256(HASH_VERSION + canonical_json(spec).encode()).hexdigest()


class ContainerProvider(Provider[ContainerSpec, ContainerState]):
    kind: ClassVar[str] = "Container"
    spec_model: ClassVar[type[Spec]] = ContainerSpec
    stages: ClassVar[bool] = True

    def __init__(self) -> None:
        self.engines = container_engine.Engines()

    async def observe(self, ctx: Context, spec: ContainerSpec) -> ContainerState | None:
        self._binds(ctx, spec)  # a path escape is an input error: found before anything runs
        engine = await self.engines.get(spec.runtime)
        return await _observe(engine, spec)

    def diff(self, spec: ContainerSpec, current: ContainerState | None) -> Change:
        name = spec.name
        if current is None:
            return Change(action=Action.CREATE, reason=f"container {name} is absent")
        want = spec_hash(spec)
        if current.spec_hash is None:
            return Change(
                action=Action.UPDATE,
                reason=f"container {name} exists but accord did not create it (no {HASH_LABEL} "
                "label); apply refuses to replace it: remove it or choose another name",
                fields=(FieldChange(field="spec_hash", current=None, desired=want[:12]),),
            )
        fields = _replace_fields(spec, current, want)
        if fields:
            what = "definition" if current.spec_hash != want else "image"
            reason = f"container {name} is replaced: its {what} changed"
        elif current.running != spec.running:
            reason = f"container {name} is {'stopped' if spec.running else 'running'}"
        else:
            return Change.noop(_converged(spec, current, want))
        if current.running != spec.running:
            fields.append(
                FieldChange(field="running", current=current.running, desired=spec.running)
            )
        return Change(action=Action.UPDATE, reason=reason, fields=tuple(fields))

    async def staged(self, ctx: Context, spec: ContainerSpec) -> bool:
        try:
            engine = await self.engines.get(spec.runtime)
            return await engine.inspect_image(spec.image) is not None
        except errors.AccordError:
            return False  # cannot tell: stage will try, and say what is wrong

    async def stage(self, ctx: Context, spec: ContainerSpec) -> None:
        engine = await self.engines.get(spec.runtime)
        if await engine.inspect_image(spec.image) is None:
            await engine.call("pull", spec.image, seconds=container_engine.PULL, output=ctx.output)

    async def apply(
        self, ctx: Context, spec: ContainerSpec, current: ContainerState | None
    ) -> None:
        engine = await self.engines.get(spec.runtime)
        await self._converge(ctx, engine, spec, current)

    async def snapshot(
        self, ctx: Context, spec: ContainerSpec, current: ContainerState | None
    ) -> Memo | None:
        """What accord created can be re-created from its spec label; anything else is
        ``None``: absent (delete removes) or not accord's (delete never touches it)."""
        if current is None or current.spec_hash is None or current.spec is None:
            return None
        return {"spec": current.spec, "running": current.running}

    async def delete(self, ctx: Context, spec: ContainerSpec, prior: Memo | None) -> str:
        engine = await self.engines.get(spec.runtime)
        if prior is not None:
            restored = _from_label(spec, prior.get("spec"), running=bool(prior.get("running")))
            await self._converge(ctx, engine, restored, await _observe(engine, restored))
            return f"restored container {spec.name} to its prior definition"
        await self._discard(ctx, engine, spec.name + NEXT)
        current = await _observe(engine, spec)
        if current is None:
            return f"container {spec.name} is already absent"
        if current.spec_hash is None:
            return f"left container {spec.name} alone: accord did not create it"
        await self._remove(ctx, engine, spec.name, running=current.running)
        return f"removed container {spec.name} (its image and volumes are kept)"

    def details(self, spec: ContainerSpec, current: ContainerState | None) -> dict[str, Any]:
        if current is None:
            return {}
        return {
            "runtime": current.runtime,
            "status": current.status,
            "running_since": current.started_at if current.running else None,
            "restarts": current.restarts,
            "image": current.image_id[:12],
        }

    # The steps

    async def _converge(
        self, ctx: Context, engine: Engine, spec: ContainerSpec, current: ContainerState | None
    ) -> None:
        """Create, replace, start or stop: whatever takes ``current`` to ``spec``."""
        if current is not None and current.spec_hash is None:
            raise errors.PermanentError(
                f"resource {ctx.resource_id!r}: container {spec.name} exists and accord did not "
                "create it; refusing to replace it (remove it or choose another name)"
            )
        running = current.running if current is not None else False
        if current is None or _replace_fields(spec, current, spec_hash(spec)):
            if await engine.inspect_image(spec.image) is None:
                raise errors.PermanentError(
                    f"resource {ctx.resource_id!r}: image {spec.image} is not on this machine; "
                    "stage it first (`accord stage`): apply never pulls, so that nothing inside "
                    "a maintenance window waits on a registry"
                )
            binds = self._binds(ctx, spec)
            if current is None:
                await self._discard(ctx, engine, spec.name + NEXT)  # left by a killed replace
                await self._create(ctx, engine, spec, spec.name, binds)
            else:
                # The new one first: if the engine rejects it, the old one is still running.
                await self._discard(ctx, engine, spec.name + NEXT)
                await self._create(ctx, engine, spec, spec.name + NEXT, binds)
                await self._remove(ctx, engine, spec.name, running=current.running)
                await engine.call("rename", spec.name + NEXT, spec.name, output=ctx.output)
            running = False
        if spec.running and not running:
            await engine.call("start", spec.name, output=ctx.output)
        elif not spec.running and running:
            await engine.call("stop", spec.name, seconds=container_engine.STOP, output=ctx.output)

    async def _create(
        self,
        ctx: Context,
        engine: Engine,
        spec: ContainerSpec,
        name: str,
        binds: Mapping[str, str],
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="accord-container-") as private:  # mode 0700
            labels = Path(private, "labels")
            labels.write_text(
                f"{HASH_LABEL}={spec_hash(spec)}\n{SPEC_LABEL}={canonical_json(spec)}\n"
            )
            args = ["create", "--name", name, "--pull=never", "--label-file", str(labels)]
            args += ["--restart", spec.restart]
            if spec.env:
                env = Path(private, "env")
                env.write_text("".join(f"{key}={value}\n" for key, value in spec.env.items()))
                args += ["--env-file", str(env)]
            for port in sorted(spec.ports, key=_port_order):
                args += ["--publish", _publish(port)]
            for volume in sorted(spec.volumes, key=lambda v: v.target):
                args += ["--mount", _mount(volume, binds.get(volume.source, volume.source))]
            args.append(spec.image)
            args += spec.command or []
            await engine.call(*args, output=_without_paths(ctx.output, private))

    async def _remove(self, ctx: Context, engine: Engine, name: str, *, running: bool) -> None:
        """Stop (gracefully, the engine's stop timeout) and remove."""
        if running:
            await engine.call("stop", name, seconds=container_engine.STOP, output=ctx.output)
        await engine.remove(name, output=ctx.output)

    async def _discard(self, ctx: Context, engine: Engine, name: str) -> None:
        """Remove a leftover container that accord made (a replacement never renamed)."""
        leftover = await engine.inspect_container(name)
        if leftover is None:
            return
        if HASH_LABEL not in _labels(leftover):
            raise errors.PermanentError(
                f"resource {ctx.resource_id!r}: container {name} is in the way and accord did "
                "not create it"
            )
        running = bool((leftover.get("State") or {}).get("Running"))
        await self._remove(ctx, engine, name, running=running)

    def _binds(self, ctx: Context, spec: ContainerSpec) -> dict[str, str]:
        """Bind-mount sources resolved (and confined) like every other path of a manifest."""
        return {
            v.source: str(ctx.roots.resolve(v.source, resource=ctx.resource_id))
            for v in spec.volumes
            if v.is_bind
        }


# Observing


async def _observe(engine: Engine, spec: ContainerSpec) -> ContainerState | None:
    item = await engine.inspect_container(spec.name)
    if item is None:
        return None
    image = await engine.inspect_image(spec.image)
    try:
        labels = _labels(item)
        state = item.get("State") or {}
        started = str(state.get("StartedAt") or "")
        return ContainerState(
            runtime=engine.runtime,
            id=str(item["Id"]),
            running=bool(state.get("Running")),
            status=str(state.get("Status") or ""),
            started_at=None if not started or started.startswith("0001-01-01") else started,
            restarts=int(item.get("RestartCount") or 0),
            image_id=_image_id(item.get("Image")),
            spec_hash=labels.get(HASH_LABEL),
            spec=labels.get(SPEC_LABEL),
            image_now=None if image is None else _image_id(image.get("Id")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise errors.PermanentError(
            f"`{engine.runtime} container inspect {spec.name}` has an unexpected shape: {exc!r}"
        ) from exc


def _labels(item: Mapping[str, Any]) -> dict[str, str]:
    labels = (item.get("Config") or {}).get("Labels") or {}
    return labels if isinstance(labels, dict) else {}


def _image_id(value: object) -> str:
    text = str(value or "")
    return text.removeprefix("sha256:")


# Diffing


def _replace_fields(spec: ContainerSpec, current: ContainerState, want: str) -> list[FieldChange]:
    """What makes a replacement necessary: the definition, or the image its reference names."""
    fields: list[FieldChange] = []
    if current.spec_hash != want:
        fields += _definition_fields(current.spec, canonical(spec)) or [
            FieldChange(
                field="spec_hash", current=(current.spec_hash or "")[:12], desired=want[:12]
            )
        ]
    if current.image_now is not None and current.image_now != current.image_id:
        fields.append(
            FieldChange(
                field="image_id", current=current.image_id[:12], desired=current.image_now[:12]
            )
        )
    return fields


def _definition_fields(label: str | None, want: dict[str, Any]) -> list[FieldChange]:
    """Field by field, from the spec label; empty when the label is missing or unreadable."""
    try:
        had = json.loads(label) if label else None
    except ValueError:
        return []
    if not isinstance(had, dict):
        return []
    fields: list[FieldChange] = []
    for key in DEFINING:
        old, new = had.get(key), want.get(key)
        if old == new:
            continue
        if key == "env":
            fields += _env_fields(old if isinstance(old, dict) else {}, new or {})
        else:
            fields.append(FieldChange(field=key, current=old, desired=new))
    return fields


def _env_fields(old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    """Which variables changed, never their values (they are often secrets)."""
    fields = []
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) == new.get(key):
            continue
        before = HIDDEN if key in old else None
        after = (f"{HIDDEN} (changed)" if key in old else HIDDEN) if key in new else None
        fields.append(FieldChange(field=f"env.{key}", current=before, desired=after))
    return fields


def _converged(spec: ContainerSpec, current: ContainerState, want: str) -> str:
    head = f"container {spec.name} matches its definition ({want[:12]})"
    if not current.running:
        return f"{head}; stopped, as declared"
    since = f" since {current.started_at}" if current.started_at else ""
    restarts = f"{current.restarts} restart{'s' * (current.restarts != 1)}"
    return f"{head}; running{since}, {restarts}"


# Creating


def _port_order(port: ContainerPort) -> tuple[str, int, str, int]:
    return (port.protocol, port.container_port, port.host_ip or "", port.host_port)


def _publish(port: ContainerPort) -> str:
    ip = port.host_ip or ""
    if ":" in ip:
        ip = f"[{ip}]"  # IPv6, as both engines want it
    host = f"{ip}:{port.host_port}" if ip else str(port.host_port)
    return f"{host}:{port.container_port}/{port.protocol}"


def _mount(volume: ContainerVolume, source: str) -> str:
    kind = "bind" if volume.is_bind else "volume"
    text = f"type={kind},source={source},target={volume.target}"
    return text + (",readonly=true" if volume.read_only else "")


def _without_paths(
    output: Callable[[str], None] | None, private: str
) -> Callable[[str], None] | None:
    """The journal gets the command without the throw-away temp directory's path."""
    if output is None:
        return None
    sink = output
    return lambda text: sink(text.replace(private + os.sep, ""))


def _from_label(spec: ContainerSpec, label: object, *, running: bool) -> ContainerSpec:
    """The spec a prior container was created from, re-read from its spec label (a snapshot
    holds it; a damaged one is a permanent failure, not a crash)."""
    try:
        if not isinstance(label, str):
            raise TypeError(f"a definition is JSON text, not {type(label).__name__}")
        defined = json.loads(label)
        return ContainerSpec.model_validate(
            {**defined, "name": spec.name, "runtime": spec.runtime, "running": running}
        )
    except (ValueError, TypeError, pydantic.ValidationError) as exc:
        raise errors.PermanentError(
            f"cannot restore container {spec.name}: its recorded definition is unreadable ({exc})"
        ) from exc
