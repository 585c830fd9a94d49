"""Spec models of the built-in resource kinds: what a user declares for each kind.

Specs are frozen and forbid unknown fields, so a typo (``moed: 0644``) is an error, not a no-op.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

SHA256 = re.compile(r"^[0-9a-f]{64}$")


_NO_REFERENCES: Mapping[str, tuple[str, ...]] = MappingProxyType({})


class Spec(BaseModel):
    """Base of every kind's spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    identity_field: ClassVar[str] = "path"
    """The field naming what the resource manages on the machine (a path, a unit, a
    container): a resource renamed in the manifest but with the same identity is taken over by
    its new id instead of being pruned and made again."""

    def references(self) -> Mapping[str, tuple[str, ...]]:
        """Resource ids this spec names, by field: ``{"restart_on": ("config",)}``.

        The manifest loader checks that each exists (naming the field's line when not), and the
        engine runs this resource after them, exactly as if they were in ``depends_on``.
        Default: none.
        """
        return _NO_REFERENCES


def _parse_mode(value: Any) -> Any:
    """Accept ``"0644"``, ``"644"``, ``"0o644"`` or an int; YAML 1.1 already turns 0644 into 420."""
    if isinstance(value, str):
        text = value.removeprefix("0o")
        if not re.fullmatch(r"[0-7]{3,4}", text):
            raise ValueError(f"mode {value!r} is not an octal permission such as '0644'")
        return int(text, 8)
    return value


Mode = Annotated[
    int,
    BeforeValidator(_parse_mode),
    Field(ge=0, le=0o7777),
    # JSON only: Python-mode dumps stay in pydantic's Rust core (the engine dumps every spec).
    PlainSerializer(lambda bits: f"{bits:04o}", return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^(0o)?[0-7]{3,4}$", "examples": ["0644"]}),
]
"""Permission bits; written as an octal string in manifests."""

Owner = str | int
"""A user or group name, or a numeric id."""

Sha256 = Annotated[str, Field(pattern=SHA256.pattern, description="lower-case sha256 hex digest")]
Path = Annotated[str, Field(min_length=1, description="absolute, or relative to the first root")]


class ArtifactSource(Spec):
    """Where content comes from when it is not inline: a URL and its required digest."""

    url: str = Field(
        min_length=1, description="http(s)://, file:///, or a path relative to the manifest"
    )
    sha256: Sha256


class FileSpec(Spec):
    """A regular file with inline content or content from an artifact source."""

    path: Path
    content: str | None = None
    source: ArtifactSource | None = None
    mode: Mode | None = Field(
        default=None, description="unmanaged when omitted; new files get 0644"
    )
    owner: Owner | None = None
    group: Owner | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FileSpec:
        if (self.content is None) == (self.source is None):
            raise ValueError("give exactly one of 'content' or 'source'")
        return self


class ArtifactSpec(Spec):
    """A downloaded file: staged into the content-addressed cache, placed at ``path`` on apply."""

    path: Path
    url: str = Field(
        min_length=1, description="http(s)://, file:///, or a path relative to the manifest"
    )
    sha256: Sha256
    mode: Mode | None = None
    owner: Owner | None = None
    group: Owner | None = None


class DirectorySpec(Spec):
    """A directory (parents are created as needed)."""

    path: Path
    mode: Mode | None = None
    owner: Owner | None = None
    group: Owner | None = None


class SymlinkSpec(Spec):
    """A symbolic link at ``path`` pointing to ``target``."""

    path: Path
    target: str = Field(min_length=1)


class CommandSpec(Spec):
    """The audited escape hatch: an argv (never a shell string) guarded for idempotency."""

    argv: list[str] = Field(min_length=1)
    creates: Path | None = Field(default=None, description="skip when this path exists")
    unless: list[str] | None = Field(default=None, description="skip when this argv exits 0")
    timeout: float = Field(default=300.0, gt=0)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Path | None = None


# Container: the spec of the ``Container`` kind (accord.providers.container), in one block.

CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # the engines' own rule
VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _no_line_breaks(value: str, what: str) -> str:
    # Env and labels go to the engine through line-based files (never argv, where every local
    # user could read them), so a value cannot span lines.
    if any(c in value for c in "\n\r\x00"):
        raise ValueError(f"{what} may not contain line breaks or NUL")
    return value


class ContainerPort(Spec):
    """A published port: ``host_port`` on the host (on ``host_ip``, default all) → the
    container's ``container_port``."""

    container_port: int = Field(ge=1, le=65535)
    host_port: int = Field(ge=1, le=65535)
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    host_ip: str | None = Field(default=None, description="an IPv4 or IPv6 address; default all")

    @field_validator("host_ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        return None if value is None else str(ipaddress.ip_address(value))


class ContainerVolume(Spec):
    """A mount: a host path (bind mount) or a named volume, at ``target`` in the container."""

    source: str = Field(
        min_length=1,
        description="a path (absolute, or relative to the first root; write ./data for a "
        "relative one) or the name of a volume (no '/')",
    )
    target: str = Field(pattern=r"^/", description="an absolute path inside the container")
    read_only: bool = False

    @field_validator("source", "target")
    @classmethod
    def _plain(cls, value: str) -> str:
        if "," in value or any(c in value for c in "\n\r\x00"):  # --mount is a CSV list
            raise ValueError("may not contain ',' or line breaks")
        return value

    @field_validator("source")
    @classmethod
    def _path_or_name(cls, value: str) -> str:
        if "/" not in value and not VOLUME_NAME.match(value):
            raise ValueError(
                f"{value!r} is neither a path (it has no '/') nor a volume name ([a-zA-Z0-9_.-])"
            )
        return value

    @property
    def is_bind(self) -> bool:
        """A host path (it has a '/'), not a named volume."""
        return "/" in self.source


class ContainerSpec(Spec):
    """A container: created from a staged image, replaced when its definition changes.

    ``image``, ``command``, ``env``, ``ports``, ``volumes`` and ``restart`` define the container
    (a change re-creates it); ``running`` and ``runtime`` do not.
    """

    identity_field: ClassVar[str] = "name"

    name: str = Field(pattern=CONTAINER_NAME.pattern, description="the container's name")
    image: str = Field(
        pattern=r"^[^\s-][^\s]*$",
        description="an image reference; pin a digest (repo@sha256:…): a tag is resolved once, "
        "when it is first staged on a machine",
    )
    command: list[str] | None = Field(
        default=None,
        min_length=1,
        description="argv replacing the image's CMD (never a shell string); default: the image's",
    )
    env: dict[str, str] = Field(default_factory=dict)
    ports: list[ContainerPort] = Field(default_factory=list)
    volumes: list[ContainerVolume] = Field(default_factory=list)
    restart: Literal["no", "on-failure", "always", "unless-stopped"] = Field(
        default="unless-stopped",
        description="the engine's restart policy; default unless-stopped, so a container "
        "declared running survives crashes and reboots between runs",
    )
    running: bool = Field(default=True, description="whether it should be running")
    runtime: Literal["auto", "podman", "docker"] = Field(
        default="auto", description="auto: podman if it is on PATH, else docker"
    )

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str]) -> dict[str, str]:
        for key, value in env.items():
            if not ENV_NAME.match(key):
                raise ValueError(
                    f"env name {key!r} is not a variable name ([A-Za-z_][A-Za-z0-9_.-]*)"
                )
            _no_line_breaks(value, f"env {key}")
        return env

    @model_validator(mode="after")
    def _distinct(self) -> ContainerSpec:
        targets = [v.target.rstrip("/") or "/" for v in self.volumes]
        if len(set(targets)) != len(targets):
            raise ValueError("two volumes mount at the same target")
        bound = [(p.host_ip, p.host_port, p.protocol) for p in self.ports]
        if len(set(bound)) != len(bound):
            raise ValueError("two ports bind the same host port")
        return self


# SystemdUnit

UNIT_NAME = (
    r"^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?"
    r"\.(service|socket|target|path|timer|mount|automount|swap|slice)$"
)
DROPIN_NAME = r"^[A-Za-z0-9_][A-Za-z0-9:_.@-]*\.conf$"


class SystemdUnitSpec(Spec):
    """A systemd unit: its unit file and drop-ins, whether it is enabled and running, and which
    resources' changes restart it. Fields left out (``None``) are not managed."""

    identity_field: ClassVar[str] = "name"

    name: str = Field(
        pattern=UNIT_NAME, max_length=255, description="the unit's name, e.g. app.service"
    )
    content: str | None = Field(
        default=None,
        min_length=1,  # an empty unit file is how systemd spells "masked"
        description="the unit file /etc/systemd/system/NAME; unmanaged when omitted",
    )
    dropins: dict[Annotated[str, Field(pattern=DROPIN_NAME)], str | None] = Field(
        default_factory=dict,
        description="drop-ins in /etc/systemd/system/NAME.d/: file name → content (null: absent)",
    )
    enabled: bool | None = Field(default=None, description="started at boot (systemctl enable)")
    active: bool | None = Field(default=None, description="running now (systemctl start/stop)")
    restart_on: tuple[Annotated[str, Field(min_length=1)], ...] = Field(
        default=(),
        description="resource ids: when one of them changes in a run, the unit is restarted",
    )

    @model_validator(mode="after")
    def _startable(self) -> SystemdUnitSpec:
        if "@." in self.name and (self.active is not None or self.restart_on):
            raise ValueError(
                f"{self.name} is a template: only its instances (name@instance) can be started"
            )
        if self.restart_on and self.active is False:
            raise ValueError("restart_on: a unit declared active: false is never restarted")
        return self

    def references(self) -> Mapping[str, tuple[str, ...]]:
        return {"restart_on": self.restart_on} if self.restart_on else _NO_REFERENCES


# Package (Debian family: apt and dpkg)

PACKAGE_NAME = r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9][a-z0-9-]*)?$"
# Debian policy 5.6.12, [epoch:]upstream[-revision]: the epoch is digits; upstream starts with a
# digit and may hold a ':' only after an epoch (dpkg takes the first ':' as the epoch's end) and
# a '-' only before a revision; the revision, after the last '-', is not empty and has neither.
DEBIAN_VERSION = (
    r"^(any"
    r"|[0-9]([A-Za-z0-9.+~-]*[A-Za-z0-9.+~])?"
    r"|[0-9]+:[0-9]([A-Za-z0-9.+~:]*|[A-Za-z0-9.+~:-]*-[A-Za-z0-9.+~]+))$"
)
MAX_EPOCH = 2**31 - 1  # dpkg's: "epoch in version is too big"
_DIGITS = frozenset("0123456789")
_REVISION_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.+~")


def _debian_version(value: Any) -> Any:
    """Refuse a version that dpkg would refuse, saying why (in dpkg's terms)."""
    if not isinstance(value, str):
        return value  # pydantic's own type error follows
    problem = None if re.fullmatch(DEBIAN_VERSION, value) else _version_problem(value)
    epoch, colon, _ = value.partition(":")
    if problem is None and colon and int(epoch) > MAX_EPOCH:
        problem = f"epoch {epoch} is too big (at most {MAX_EPOCH})"
    if problem is not None:
        raise ValueError(
            f"{value!r} is not a Debian version ([epoch:]upstream[-revision]) or 'any': {problem}"
        )
    return value


def _version_problem(version: str) -> str:
    """Why ``version`` does not match :data:`DEBIAN_VERSION`."""
    epoch, colon, rest = version.partition(":")
    if colon:
        if not epoch:
            return "the epoch is empty (nothing before the ':')"
        if not set(epoch) <= _DIGITS:
            return (
                f"epoch {epoch!r} is not a number (a ':' may follow only an epoch of digits, "
                "as in 1:2.0)"
            )
        if not rest:
            return "nothing after the epoch's ':'"
    else:
        rest = version
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    if dash and not revision:
        return "the revision is empty (nothing after the last '-')"
    if not upstream:
        return "the upstream version is empty"
    if upstream[0] not in _DIGITS:
        return f"the upstream version {upstream!r} does not start with a digit"
    allowed = _REVISION_CHARS | set("-:" if colon else "-")
    if bad := next((c for c in upstream if c not in allowed), None):
        return f"invalid character {bad!r} in the upstream version {upstream!r}"
    if bad := next((c for c in revision if c not in _REVISION_CHARS), None):
        return f"invalid character {bad!r} in the revision {revision!r} (after the last '-')"
    return "not of that form"


class PackageSpec(Spec):
    """A Debian package (apt, dpkg): installed at a pinned or any version, or absent."""

    identity_field: ClassVar[str] = "name"

    name: str = Field(pattern=PACKAGE_NAME, description="a package name, optionally :architecture")
    version: Annotated[str, BeforeValidator(_debian_version)] = Field(
        default="any",
        pattern=DEBIAN_VERSION,
        description="a Debian version to pin ([epoch:]upstream[-revision]), or 'any'",
    )
    state: Literal["present", "absent"] = "present"
    purge: bool = Field(default=False, description="with state absent: remove config files too")
    timeout: float = Field(
        default=600.0, gt=0, description="seconds each install or removal (apt, dpkg) may take"
    )

    @model_validator(mode="after")
    def _consistent(self) -> PackageSpec:
        if self.state == "absent" and self.version != "any":
            raise ValueError("'version' applies to state 'present'; an absent package has none")
        if self.state == "present" and self.purge:
            raise ValueError("'purge' applies to state 'absent'")
        return self
