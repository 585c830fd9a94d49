"""The provider contract over every built-in kind, plus bugs the contract's seams exposed.

Owner cases use ``root`` (uid 0: the tests run as root) and ``nobody``/``nogroup``; where those
do not exist the cases are skipped with a reason, never passed silently.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import sys
from importlib import metadata
from pathlib import Path

import pytest

import contract.test_provider_package as package_contract
from accord import errors
from accord.model.plan import Action
from accord.model.specs import (
    ArtifactSource,
    ArtifactSpec,
    CommandSpec,
    DirectorySpec,
    FileSpec,
    Spec,
    SymlinkSpec,
)
from accord.providers import registry
from accord.providers.artifact import ArtifactProvider
from accord.providers.base import Context
from accord.providers.command import CommandProvider
from accord.providers.directory import DirectoryProvider
from accord.providers.file import FileProvider
from accord.providers.symlink import SymlinkProvider
from accord.testing.provider_contract import (
    ABSENT,
    Desired,
    ProviderContract,
    Sandbox,
    Start,
    tree,
)
from contract import test_provider_container
from contract import test_provider_systemd as systemd  # a module: its classes run there, once


def _ids(user: str, group: str) -> tuple[int, int] | None:
    try:
        return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        return None


NOBODY = _ids("nobody", "nogroup")
NEEDS_NOBODY = (
    ()
    if NOBODY is not None
    else (pytest.mark.skip(reason="no user 'nobody' or group 'nogroup' here: owner case not run"),)
)
NOBODY_UID, NOBODY_GID = NOBODY or (-1, -1)

PY = sys.executable


def _parent(path: str) -> Start:
    """Only the parent directory exists."""
    return Start("absent", lambda sb: sb.mkdir(str(Path(path).parent)), expect=Action.CREATE)


PARENT_ABSENT = Start("parent-absent", lambda sb: None, expect=Action.CREATE)


# File (inline content)

FILE = "etc/app.conf"
HELLO = b"hello\n"


class TestFile(ProviderContract):
    provider = FileProvider()
    desired = [
        Desired("content", lambda sb: FileSpec(path=FILE, content="hello\n")),
        Desired(
            "content-0640-root",
            lambda sb: FileSpec(path=FILE, content="hello\n", mode="0640", owner="root", group=0),
        ),
        Desired(
            "content-nobody",
            lambda sb: FileSpec(path=FILE, content="hello\n", owner="nobody", group="nogroup"),
            marks=NEEDS_NOBODY,
        ),
    ]
    starts = [
        PARENT_ABSENT,
        _parent(FILE),
        Start("same-0640", lambda sb: sb.write(FILE, HELLO, mode=0o640)),
        Start("stale", lambda sb: sb.write(FILE, b"stale content\n"), expect=Action.UPDATE),
        Start("same-size-other-bytes", lambda sb: sb.write(FILE, b"HELLO\n")),
        Start("interrupted", lambda sb: sb.write(FILE, b"hel"), expect=Action.UPDATE),
        Start("same-0777", lambda sb: sb.write(FILE, HELLO, mode=0o777)),
        Start("empty", lambda sb: sb.write(FILE, b""), expect=Action.UPDATE),
        Start(
            "same-owned-by-nobody",
            lambda sb: sb.write(FILE, HELLO, uid=NOBODY_UID, gid=NOBODY_GID),
            marks=NEEDS_NOBODY,
        ),
        Start(
            "link-to-outside-same-bytes",  # same bytes behind the link: still not "a file"
            lambda sb: (_outside_file(sb, HELLO), sb.link(FILE, "../../outside/secret")),
            expect=Action.UPDATE,
        ),
        Start(
            "link-inside-same-bytes",
            lambda sb: (sb.write("etc/real.conf", HELLO), sb.link(FILE, "real.conf")),
            expect=Action.UPDATE,
        ),
        Start(
            "dir-in-the-way",
            lambda sb: sb.write(f"{FILE}/keep", b"mine"),
            refuses=errors.PermanentError,
            expect=Action.UPDATE,
        ),
    ]


def _outside_file(sb: Sandbox, data: bytes) -> Path:
    target = sb.outside / "secret"
    target.write_bytes(data)
    return target


# File (artifact source) and Artifact: staged from a source

BLOB = bytes(range(256)) * 256  # 64 KiB
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()
TARGET = "opt/app/blob.bin"


def _source(sb: Sandbox) -> Path:
    return sb.source("blob.bin", BLOB)


def _partial(data: bytes) -> Start:
    """A download interrupted earlier: a ``.partial`` file in the cache."""

    def arrange(sb: Sandbox) -> None:
        partial = sb.cache.partial(BLOB_SHA)
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(data)

    return Start(f"partial-download-{'good' if BLOB.startswith(data) else 'bad'}", arrange)


BLOB_STARTS = [
    PARENT_ABSENT,
    _parent(TARGET),
    Start("same-0600", lambda sb: sb.write(TARGET, BLOB, mode=0o600)),
    Start("stale", lambda sb: sb.write(TARGET, b"old version"), expect=Action.UPDATE),
    Start("interrupted", lambda sb: sb.write(TARGET, BLOB[:1000]), expect=Action.UPDATE),
    Start("same-size-other-bytes", lambda sb: sb.write(TARGET, BLOB[::-1])),
    _partial(BLOB[: len(BLOB) // 2]),
    _partial(b"garbage" * 100),
    Start(
        "link-to-outside",
        lambda sb: (_outside_file(sb, BLOB), sb.link(TARGET, "../../../outside/secret")),
        expect=Action.UPDATE,
    ),
    Start(
        "dir-in-the-way",
        lambda sb: sb.mkdir(TARGET),
        refuses=errors.PermanentError,
        expect=Action.UPDATE,
    ),
]


class TestFileFromSource(ProviderContract):
    provider = FileProvider()
    desired = [
        Desired(
            "file-url",
            lambda sb: FileSpec(
                path=TARGET, source=ArtifactSource(url=_source(sb).as_uri(), sha256=BLOB_SHA)
            ),
        ),
    ]
    starts = BLOB_STARTS


class TestArtifact(ProviderContract):
    provider = ArtifactProvider()
    desired = [
        Desired(
            "relative",
            lambda sb: ArtifactSpec(path=TARGET, url=_source(sb).name, sha256=BLOB_SHA),
        ),
        Desired(
            "absolute-path-root",
            lambda sb: ArtifactSpec(
                path=str(sb.root / TARGET),
                url=str(_source(sb)),
                sha256=BLOB_SHA,
                mode="0600",
                owner="root",
                group="root",
            ),
        ),
    ]
    starts = BLOB_STARTS


# Directory

DIR = "srv/data"


class TestDirectory(ProviderContract):
    provider = DirectoryProvider()
    desired = [
        Desired("plain", lambda sb: DirectorySpec(path=DIR)),
        Desired(
            "root-0700", lambda sb: DirectorySpec(path=DIR, mode="0700", owner=0, group="root")
        ),
        Desired(
            "nobody-0755",
            lambda sb: DirectorySpec(path=DIR, mode="0755", owner="nobody", group=NOBODY_GID),
            marks=NEEDS_NOBODY,
        ),
    ]
    starts = [
        PARENT_ABSENT,
        _parent(DIR),
        Start("exists-0750", lambda sb: sb.mkdir(DIR, mode=0o750)),
        Start("exists-0777", lambda sb: sb.mkdir(DIR, mode=0o777)),
        Start(
            "holds-files-0777",
            lambda sb: (sb.mkdir(DIR, mode=0o777), sb.write(f"{DIR}/keep", b"mine")),
        ),
        Start(
            "owned-by-nobody",
            lambda sb: sb.mkdir(DIR, uid=NOBODY_UID, gid=NOBODY_GID),
            marks=NEEDS_NOBODY,
        ),
        Start(
            "link-to-outside-dir",
            lambda sb: sb.link(DIR, sb.outside),  # absolute target, a real directory
            expect=Action.UPDATE,
        ),
        Start("dangling-link", lambda sb: sb.link(DIR, "gone"), expect=Action.UPDATE),
        Start(
            "file-in-the-way",
            lambda sb: sb.write(DIR, b"not a directory"),
            refuses=errors.PermanentError,
            expect=Action.UPDATE,
        ),
    ]


# Symlink

LINK = "links/current"


def _releases(sb: Sandbox) -> None:
    for release in ("v1", "v2"):
        sb.mkdir(f"releases/{release}")


def _link_spec(name: str, target: str) -> Desired:
    def make(sb: Sandbox) -> SymlinkSpec:
        _releases(sb)
        return SymlinkSpec(path=LINK, target=target.format(root=sb.root))

    return Desired(name, make)


class TestSymlink(ProviderContract):
    provider = SymlinkProvider()
    reapply_touches = True  # apply re-creates the link even when it already points right
    desired = [
        _link_spec("relative", "../releases/v2"),
        _link_spec("absolute-dangling", "{root}/releases/v9"),  # the target may come later
    ]
    starts = [
        PARENT_ABSENT,
        _parent(LINK),
        Start("to-v2", lambda sb: sb.link(LINK, "../releases/v2")),
        Start("to-v1", lambda sb: sb.link(LINK, "../releases/v1"), expect=Action.UPDATE),
        Start("to-outside", lambda sb: sb.link(LINK, "../../outside"), expect=Action.UPDATE),
        Start("file-in-the-way", lambda sb: sb.write(LINK, b"x"), expect=Action.UPDATE),
        Start(
            "empty-dir-in-the-way",
            lambda sb: sb.mkdir(LINK),
            refuses=errors.PermanentError,
            expect=Action.UPDATE,
        ),
        Start(
            "full-dir-in-the-way",
            lambda sb: sb.write(f"{LINK}/keep", b"mine"),
            refuses=errors.PermanentError,
            expect=Action.UPDATE,
        ),
    ]


# Command (not reversible; converges through its `creates` guard)

WRITE_OUT = [PY, "-c", "open('out', 'w').write('x')"]


def _in_work(sb: Sandbox) -> CommandSpec:
    sb.mkdir("work")
    return CommandSpec(argv=WRITE_OUT, creates="work/out", cwd="work")


def _ran(data: bytes) -> Start:
    def arrange(sb: Sandbox) -> None:
        sb.write("out", data)
        sb.write("work/out", data)

    return Start(f"ran-wrote-{data.decode()}", arrange, expect=Action.NOOP)


class TestCommand(ProviderContract):
    provider = CommandProvider()
    allow_commands = True
    reapply_touches = True  # the guard is what keeps a command from re-running, not apply
    desired = [
        Desired("creates-in-root", lambda sb: CommandSpec(argv=WRITE_OUT, creates="out")),
        Desired("creates-in-cwd", _in_work),
    ]
    starts = [
        ABSENT,  # not run yet
        _ran(b"x"),
        _ran(b"y"),
    ]


# Coverage: every registered kind runs the contract

CONTRACTS: list[type[ProviderContract]] = [
    TestFile,
    TestFileFromSource,
    TestArtifact,
    TestDirectory,
    TestSymlink,
    TestCommand,
    test_provider_container.TestContainer,
    systemd.TestSystemdUnit,
    systemd.TestSystemdVendorUnit,
    systemd.TestSystemdMaskedVendorUnit,
    package_contract.TestPackage,
]


def test_every_built_in_kind_runs_the_contract() -> None:
    built_in = {
        entry.name
        for entry in metadata.entry_points(group=registry.GROUP)
        if entry.dist is not None and entry.dist.name == "accord"
    }
    assert {"File", "Directory", "Symlink", "Artifact", "Command"} <= built_in
    assert {c.provider.kind for c in CONTRACTS} == built_in


# Behaviour beside the contract


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox.create(tmp_path)


@pytest.fixture
def ctx(sandbox: Sandbox) -> Context:
    return ProviderContract().context(sandbox).bind("res-1")


async def test_file_reuses_and_removes_a_temp_file_a_killed_run_left(
    sandbox: Sandbox, ctx: Context
) -> None:
    spec = FileSpec(path=FILE, content="hello\n")
    sandbox.write(FILE, b"hel")
    sandbox.write("etc/.accord-app.conf.tmp", b"half of a killed write")
    await FileProvider().apply(ctx, spec, await FileProvider().observe(ctx, spec))
    assert sorted(os.listdir(sandbox.root / "etc")) == ["app.conf"]
    assert (sandbox.root / FILE).read_bytes() == HELLO


async def test_file_keeps_the_mode_of_an_unmanaged_file_it_rewrites(
    sandbox: Sandbox, ctx: Context
) -> None:
    spec = FileSpec(path=FILE, content="hello\n")
    sandbox.write(FILE, b"stale", mode=0o604)
    await FileProvider().apply(ctx, spec, await FileProvider().observe(ctx, spec))
    assert os.stat(sandbox.root / FILE).st_mode & 0o7777 == 0o604


async def test_file_with_mode_0000_converges_in_one_apply(sandbox: Sandbox, ctx: Context) -> None:
    provider = FileProvider()
    spec = FileSpec(path=FILE, content="secret\n", mode="0000")
    await provider.apply(ctx, spec, await provider.observe(ctx, spec))
    change = provider.diff(spec, await provider.observe(ctx, spec))
    assert change.is_noop, change.describe()


@pytest.mark.skipif(NOBODY is None, reason="no user 'nobody' or group 'nogroup' here")
async def test_file_keeps_the_owner_of_an_unmanaged_file_it_rewrites(
    sandbox: Sandbox, ctx: Context
) -> None:
    spec = FileSpec(path=FILE, content="hello\n")  # owner and group unmanaged
    sandbox.write(FILE, b"stale", uid=NOBODY_UID, gid=NOBODY_GID)
    await FileProvider().apply(ctx, spec, await FileProvider().observe(ctx, spec))
    st = os.stat(sandbox.root / FILE)
    assert (st.st_uid, st.st_gid) == (NOBODY_UID, NOBODY_GID)


async def test_numeric_string_ids_are_ids(sandbox: Sandbox, ctx: Context) -> None:
    provider = FileProvider()
    spec = FileSpec(path=FILE, content="hello\n", owner="0", group="0")
    sandbox.write(FILE, HELLO)
    assert provider.diff(spec, await provider.observe(ctx, spec)).is_noop


PARENT_IS_A_FILE = [
    (FileProvider(), FileSpec(path="etc/app.conf", content="x")),
    (DirectoryProvider(), DirectorySpec(path="etc/app.conf")),
    (SymlinkProvider(), SymlinkSpec(path="etc/app.conf", target="x")),
]


@pytest.mark.parametrize(
    ("provider", "spec"), PARENT_IS_A_FILE, ids=[p.kind for p, _ in PARENT_IS_A_FILE]
)
async def test_observe_under_a_parent_that_is_a_file_is_typed(
    sandbox: Sandbox, ctx: Context, provider: registry.AnyProvider, spec: Spec
) -> None:
    sandbox.write("etc", b"a file where a directory should be")
    try:
        current = await provider.observe(ctx, spec)
    except errors.AccordError:
        return  # refusing, typed, is acceptable too
    assert current is None  # the path cannot exist: absent
    with pytest.raises(errors.AccordError):
        await provider.apply(ctx, spec, current)


async def test_delete_restoring_a_link_onto_a_full_directory_is_typed(
    sandbox: Sandbox, ctx: Context
) -> None:
    spec = SymlinkSpec(path=LINK, target="../releases/v1")
    sandbox.write(f"{LINK}/keep", b"mine")
    with pytest.raises(errors.AccordError):
        await SymlinkProvider().delete(ctx, spec, {"type": "symlink", "target": "../releases/v1"})
    assert (sandbox.root / LINK / "keep").read_bytes() == b"mine"


async def test_delete_of_a_file_over_a_directory_is_refused(sandbox: Sandbox, ctx: Context) -> None:
    provider = FileProvider()
    spec = FileSpec(path=FILE, content="hello\n")
    sandbox.write(FILE, b"prior")
    memo = await provider.snapshot(ctx, spec, await provider.observe(ctx, spec))
    (sandbox.root / FILE).unlink()
    sandbox.write(f"{FILE}/keep", b"mine")
    before = tree(sandbox.root)
    with pytest.raises(errors.PermanentError, match="directory is in the way"):
        await provider.delete(ctx, spec, memo)
    assert tree(sandbox.root) == before
