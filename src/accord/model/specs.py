"""Spec models of the built-in resource kinds: what a user declares for each kind.

Specs are frozen and forbid unknown fields, so a typo (``moed: 0644``) is an error, not a no-op.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Spec(BaseModel):
    """Base of every kind's spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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


# Package (Debian family: apt and dpkg)

PACKAGE_NAME = r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9][a-z0-9-]*)?$"
DEBIAN_VERSION = r"^(any|([0-9]+:)?[0-9][A-Za-z0-9.+~:-]*)$"


class PackageSpec(Spec):
    """A Debian package (apt, dpkg): installed at a pinned or any version, or absent."""

    name: str = Field(pattern=PACKAGE_NAME, description="a package name, optionally :architecture")
    version: str = Field(
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
