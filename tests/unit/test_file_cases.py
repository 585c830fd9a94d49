"""Pinned diff behaviour of the file-like providers: desired + observed → expected change.

Pure data cases (pyinfra style): no disk, no context. Each row is (desired spec, observed state)
and the expected (action, names of the differing fields in order, a substring of the reason).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pytest

from accord.model.plan import Action, FieldChange
from accord.model.specs import (
    ArtifactSource,
    ArtifactSpec,
    DirectorySpec,
    FileSpec,
    Spec,
    SymlinkSpec,
)
from accord.providers.artifact import ArtifactProvider
from accord.providers.directory import DirectoryProvider
from accord.providers.file import FileProvider, FileState
from accord.providers.symlink import LinkState, SymlinkProvider

FILE, DIR, LINK = "etc/app.conf", "srv/data", "links/current"
HELLO = hashlib.sha256(b"hello\n").hexdigest()
EMPTY = hashlib.sha256(b"").hexdigest()
OTHER = hashlib.sha256(b"other\n").hexdigest()
BLOB = "ab" * 32


def file(**spec: Any) -> FileSpec:
    return FileSpec(path=FILE, **({"content": "hello\n"} | spec))


def present(sha256: str | None = HELLO, **state: Any) -> FileState:
    """A regular file as observe reports it (root-owned 0644 unless told otherwise)."""
    return FileState(**({"type": "file", "size": 6, "sha256": sha256, "mode": 0o644} | state))


@dataclass(frozen=True)
class Row:
    provider: Any
    spec: Spec
    observed: object | None
    action: Action
    fields: tuple[str, ...]
    reason: str


F, D, S, A = FileProvider(), DirectoryProvider(), SymlinkProvider(), ArtifactProvider()
NOOP, CREATE, UPDATE = Action.NOOP, Action.CREATE, Action.UPDATE

ROWS: dict[str, Row] = {
    # File: what is at the path
    "file/absent": Row(F, file(), None, CREATE, (), f"{FILE} is absent"),
    "file/directory": Row(
        F, file(), FileState("directory"), UPDATE, ("type",), "is a directory, not a file"
    ),
    "file/symlink": Row(
        F, file(), FileState("symlink"), UPDATE, ("type",), "is a symlink, not a file"
    ),
    "file/fifo": Row(F, file(), FileState("other"), UPDATE, ("type",), "not a file"),
    # File: content
    "file/same": Row(F, file(), present(), NOOP, (), f"content matches sha256 {HELLO[:12]}"),
    "file/noop-names-the-mode": Row(F, file(), present(mode=0o600), NOOP, (), "mode 0600"),
    "file/other-bytes": Row(F, file(), present(OTHER), UPDATE, ("sha256",), f"{FILE} differs"),
    "file/other-size-unhashed": Row(
        F, file(), present(None, size=3), UPDATE, ("sha256",), "differs"
    ),
    "file/empty-wanted": Row(F, file(content=""), present(EMPTY, size=0), NOOP, (), EMPTY[:12]),
    "file/empty-found": Row(F, file(), present(EMPTY, size=0), UPDATE, ("sha256",), "differs"),
    # File: mode, owner, group (None = unmanaged)
    "file/mode-unmanaged": Row(F, file(), present(mode=0o777), NOOP, (), "mode 0777"),
    "file/mode-differs": Row(F, file(mode="0640"), present(mode=0o777), UPDATE, ("mode",), ""),
    "file/mode-matches": Row(F, file(mode=0o640), present(mode=0o640), NOOP, (), "mode 0640"),
    "file/mode-0000": Row(F, file(mode="0000"), present(mode=0o644), UPDATE, ("mode",), ""),
    "file/owner-unmanaged": Row(F, file(), present(uid=65534, gid=65534), NOOP, (), "matches"),
    "file/owner-differs": Row(F, file(owner=0), present(uid=65534), UPDATE, ("owner",), ""),
    "file/owner-by-name": Row(F, file(owner="root", group="root"), present(), NOOP, (), ""),
    "file/group-differs": Row(F, file(group=0), present(gid=65534), UPDATE, ("group",), ""),
    "file/everything-differs": Row(
        F,
        file(mode="0600", owner=0, group=0),
        present(OTHER, mode=0o644, uid=1, gid=1),
        UPDATE,
        ("sha256", "mode", "owner", "group"),
        f"{FILE} differs",
    ),
    "file/type-wins-over-mode": Row(
        F, file(mode="0600"), FileState("symlink", mode=0o777), UPDATE, ("type",), "symlink"
    ),
    # File from an artifact source: the digest is the source's
    "file-source/same": Row(
        F,
        FileSpec(path=FILE, source=ArtifactSource(url="blob.bin", sha256=BLOB)),
        present(BLOB, size=10),
        NOOP,
        (),
        f"content matches sha256 {BLOB[:12]}",
    ),
    "file-source/differs": Row(
        F,
        FileSpec(path=FILE, source=ArtifactSource(url="blob.bin", sha256=BLOB)),
        present(HELLO),
        UPDATE,
        ("sha256",),
        "differs",
    ),
    # Artifact: the same comparison as File
    "artifact/absent": Row(
        A, ArtifactSpec(path=FILE, url="b", sha256=BLOB), None, CREATE, (), "is absent"
    ),
    "artifact/same": Row(
        A, ArtifactSpec(path=FILE, url="b", sha256=BLOB), present(BLOB), NOOP, (), BLOB[:12]
    ),
    "artifact/mode": Row(
        A,
        ArtifactSpec(path=FILE, url="b", sha256=BLOB, mode="0600"),
        present(BLOB),
        UPDATE,
        ("mode",),
        "differs",
    ),
    # Directory
    "dir/absent": Row(D, DirectorySpec(path=DIR), None, CREATE, (), f"{DIR} is absent"),
    "dir/file": Row(
        D, DirectorySpec(path=DIR), present(), UPDATE, ("type",), "is a file, not a directory"
    ),
    "dir/symlink": Row(
        D, DirectorySpec(path=DIR), FileState("symlink"), UPDATE, ("type",), "not a directory"
    ),
    "dir/exists": Row(
        D,
        DirectorySpec(path=DIR),
        FileState("directory", mode=0o700),
        NOOP,
        (),
        "directory exists, mode 0700",
    ),
    "dir/mode-differs": Row(
        D,
        DirectorySpec(path=DIR, mode="0750"),
        FileState("directory", mode=0o777),
        UPDATE,
        ("mode",),
        f"{DIR} differs",
    ),
    "dir/owner-and-group-differ": Row(
        D,
        DirectorySpec(path=DIR, owner=0, group="root"),
        FileState("directory", mode=0o755, uid=65534, gid=65534),
        UPDATE,
        ("owner", "group"),
        "differs",
    ),
    "dir/owner-matches": Row(
        D,
        DirectorySpec(path=DIR, mode="0755", owner="root", group=0),
        FileState("directory", mode=0o755),
        NOOP,
        (),
        "mode 0755",
    ),
    # Symlink
    "link/absent": Row(
        S, SymlinkSpec(path=LINK, target="../v2"), None, CREATE, (), f"{LINK} is absent"
    ),
    "link/file": Row(
        S,
        SymlinkSpec(path=LINK, target="../v2"),
        LinkState("file"),
        UPDATE,
        ("type",),
        "is a file, not a link",
    ),
    "link/directory": Row(
        S,
        SymlinkSpec(path=LINK, target="../v2"),
        LinkState("directory"),
        UPDATE,
        ("type",),
        "is a directory, not a link",
    ),
    "link/elsewhere": Row(
        S,
        SymlinkSpec(path=LINK, target="../v2"),
        LinkState("symlink", "../v1"),
        UPDATE,
        ("target",),
        "points elsewhere",
    ),
    "link/same": Row(
        S, SymlinkSpec(path=LINK, target="../v2"), LinkState("symlink", "../v2"), NOOP, (), "../v2"
    ),
    "link/targets-compare-as-written": Row(
        S,
        SymlinkSpec(path=LINK, target="../v2"),
        LinkState("symlink", "../v2/"),
        UPDATE,
        ("target",),
        "points elsewhere",
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_diff(row: Row) -> None:
    change = row.provider.diff(row.spec, row.observed)
    assert change.action is row.action, change.describe()
    assert tuple(f.field for f in change.fields) == row.fields, change.describe()
    assert row.reason in change.reason
    assert change.reason.strip()
    assert row.provider.diff(row.spec, row.observed) == change


# Exact field values, where the rows above only name the fields


def fields(provider: Any, spec: Spec, observed: object) -> tuple[FieldChange, ...]:
    fields: tuple[FieldChange, ...] = provider.diff(spec, observed).fields
    return fields


def test_type_field_says_what_is_there_and_what_is_wanted() -> None:
    assert fields(F, file(), FileState("directory")) == (
        FieldChange(field="type", current="directory", desired="file"),
    )
    assert fields(S, SymlinkSpec(path=LINK, target="x"), LinkState("file")) == (
        FieldChange(field="type", current="file", desired="symlink"),
    )


def test_sha256_field_names_the_size_when_the_digest_was_not_computed() -> None:
    assert fields(F, file(), present(None, size=3)) == (
        FieldChange(field="sha256", current="3 bytes", desired=HELLO),
    )
    assert fields(F, file(), present(OTHER)) == (
        FieldChange(field="sha256", current=OTHER, desired=HELLO),
    )


def test_mode_fields_are_octal_strings() -> None:
    assert fields(F, file(mode="0640"), present(mode=0o4777)) == (
        FieldChange(field="mode", current="4777", desired="0640"),
    )


def test_owner_fields_keep_what_the_user_wrote() -> None:
    assert fields(
        D, DirectorySpec(path=DIR, owner="root", group=0), FileState("directory", uid=7, gid=8)
    ) == (
        FieldChange(field="owner", current=7, desired="root"),
        FieldChange(field="group", current=8, desired=0),
    )


def test_target_field_shows_both_targets() -> None:
    assert fields(S, SymlinkSpec(path=LINK, target="../v2"), LinkState("symlink", "/abs")) == (
        FieldChange(field="target", current="/abs", desired="../v2"),
    )


def test_describe_lists_the_reason_then_each_field() -> None:
    change = F.diff(file(mode="0600"), present(OTHER, mode=0o644))
    assert change.describe() == (
        f"{FILE} differs; sha256: '{OTHER}' → '{HELLO}'; mode: '0644' → '0600'"
    )
