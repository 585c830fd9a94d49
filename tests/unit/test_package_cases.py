"""Pinned behaviour of the Package kind without dpkg: desired + observed → expected change, the
details it reports, its spec's validation, and the pure parts of talking to apt and dpkg.

Rows as in ``test_file_cases``: (desired spec, observed state) → (action, names of the differing
fields, a substring of the reason).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import shutil
import subprocess
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from accord import errors
from accord.model.plan import Action, FieldChange
from accord.model.specs import PackageSpec
from accord.providers import apt, cache, debstage, debversion
from accord.providers.apt import Deb, Finished, PackageState
from accord.providers.package import NOT_INSTALLED, PackageProvider
from helpers import build_manifest

P = PackageProvider()
NAME = "nginx"
NOOP, CREATE, UPDATE, DELETE = Action.NOOP, Action.CREATE, Action.UPDATE, Action.DELETE


def spec(**fields: Any) -> PackageSpec:
    return PackageSpec(name=NAME, **fields)


def dpkg(version: str = "1.0-1", status: str = "installed", **state: Any) -> PackageState:
    return PackageState(status=status, version=version, architecture="amd64", **state)


@dataclass(frozen=True)
class Row:
    spec: PackageSpec
    observed: PackageState | None
    action: Action
    fields: tuple[str, ...]
    reason: str


ROWS: dict[str, Row] = {
    # present, any version
    "any/unknown-to-dpkg": Row(spec(), NOT_INSTALLED, CREATE, (), "not installed; wanted any"),
    "any/none": Row(spec(), None, CREATE, (), f"{NAME} is not installed"),
    "any/installed": Row(spec(), dpkg(), NOOP, (), "1.0-1 is installed (any version will do)"),
    "any/config-files": Row(
        spec(), dpkg(status="config-files"), CREATE, (), "configuration files remain"
    ),
    "any/half-configured": Row(
        spec(), dpkg(status="half-configured"), UPDATE, ("status",), "is half-configured"
    ),
    "any/triggers-pending": Row(
        spec(), dpkg(status="triggers-pending"), UPDATE, ("status",), "triggers-pending"
    ),
    "any/reinst-required": Row(
        spec(), dpkg(reinstall_required=True), UPDATE, ("status",), "reinst-required"
    ),
    "any/held": Row(spec(), dpkg(selection="hold"), NOOP, (), "is installed"),
    # present, pinned
    "pinned/same": Row(spec(version="1.0-1"), dpkg(), NOOP, (), "1.0-1 is installed, as pinned"),
    "pinned/upgrade": Row(
        spec(version="1.2-1"), dpkg(), UPDATE, ("version",), "wanted 1.2-1 (an upgrade)"
    ),
    "pinned/downgrade": Row(
        spec(version="1.0~rc1-1"), dpkg(), UPDATE, ("version",), "(a downgrade)"
    ),
    "pinned/epoch-wins": Row(spec(version="1:0.9"), dpkg("2.0"), UPDATE, ("version",), "upgrade"),
    "pinned/zero-epoch-is-no-epoch": Row(spec(version="0:1.0-1"), dpkg(), NOOP, (), "as pinned"),
    "pinned/absent": Row(spec(version="1.0-1"), NOT_INSTALLED, CREATE, (), "wanted 1.0-1"),
    "pinned/half-configured-and-old": Row(
        spec(version="2.0"),
        dpkg(status="half-configured"),
        UPDATE,
        ("status", "version"),
        "is half-configured",
    ),
    "pinned/held": Row(
        spec(version="2.0"), dpkg(selection="hold"), UPDATE, ("version",), "held (apt-mark hold)"
    ),
    # absent
    "absent/unknown-to-dpkg": Row(spec(state="absent"), NOT_INSTALLED, NOOP, (), "not installed"),
    "absent/installed": Row(
        spec(state="absent"), dpkg(), DELETE, ("status",), "1.0-1 is installed; wanted absent"
    ),
    "absent/config-files": Row(
        spec(state="absent"),
        dpkg(status="config-files"),
        NOOP,
        (),
        "purge: true would remove them",
    ),
    "absent-purged/config-files": Row(
        spec(state="absent", purge=True),
        dpkg(status="config-files"),
        DELETE,
        ("status",),
        "configuration files remain; wanted purged",
    ),
    "absent-purged/installed": Row(
        spec(state="absent", purge=True), dpkg(), DELETE, ("status",), "wanted purged"
    ),
    "absent/unpacked": Row(
        spec(state="absent"), dpkg(status="unpacked"), DELETE, ("status",), "wanted absent"
    ),
    "absent/held": Row(
        spec(state="absent"), dpkg(selection="hold"), DELETE, ("status",), "apply will refuse"
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
    assert P.diff(spec(version="2.0"), dpkg("1.0", status="unpacked")).fields == (
        FieldChange(field="status", current="unpacked", desired="installed"),
        FieldChange(field="version", current="1.0", desired="2.0"),
    )
    assert P.diff(spec(state="absent", purge=True), dpkg()).fields == (
        FieldChange(field="status", current="installed", desired="purged"),
    )


def test_details_report_the_installed_version() -> None:
    assert P.details(spec(), NOT_INSTALLED) == {"version": None}
    assert P.details(spec(), dpkg()) == {"version": "1.0-1", "architecture": "amd64"}
    assert P.details(spec(), dpkg(status="config-files")) == {
        "version": None,
        "status": "config-files",
    }
    assert P.details(spec(), dpkg(status="half-configured", selection="hold")) == {
        "version": "1.0-1",
        "architecture": "amd64",
        "status": "half-configured",
        "held": True,
    }


# The spec


@pytest.mark.parametrize("name", ["nginx", "libc6", "g++", "python3.11", "libc6:i386", "0ad"])
def test_package_names(name: str) -> None:
    assert PackageSpec(name=name).name == name


@pytest.mark.parametrize("name", ["", "a", "Nginx", "foo bar", "foo_bar", "-x", "nginx:"])
def test_bad_package_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        PackageSpec(name=name)


@pytest.mark.parametrize(
    "version",
    ["any", "1.0", "1:2.3~rc1-4+deb12u1", "0.9+git20240101-1", "1:2:3", "2:1.0-a-b-1", "0"],
)
def test_versions(version: str) -> None:
    assert spec(version=version).version == version


BAD_VERSIONS = {  # what dpkg refuses → what the message says
    "latest": "does not start with a digit",
    "v1.0": "does not start with a digit",
    "1.0 ": "invalid character ' '",
    "": "empty",
    "1.0/2": "invalid character '/'",
    "1.0:2": "epoch '1.0' is not a number",  # a colon only after an epoch
    "1:": "nothing after the epoch",
    ":1.0": "epoch is empty",
    "1.0-": "revision is empty",
    "1:2.0-": "revision is empty",
    "1:2.0-1:3": "invalid character ':' in the revision",
    "1:a": "does not start with a digit",
    "-1": "upstream version is empty",
    "99999999999:1": "epoch 99999999999 is too big",
}


@pytest.mark.parametrize(("version", "says"), BAD_VERSIONS.items(), ids=BAD_VERSIONS.keys())
def test_bad_versions_are_refused_saying_why(version: str, says: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(says)):
        spec(version=version)


def test_a_bad_version_is_refused_when_the_manifest_loads_naming_the_field() -> None:
    resource = {"id": "pkg", "kind": "Package", "spec": {"name": NAME, "version": "1.0:2"}}
    with pytest.raises(errors.ManifestError) as caught:
        build_manifest([resource])
    (problem,) = caught.value.problems
    assert "resource 'pkg'" in problem and "version" in problem, problem
    assert "epoch '1.0' is not a number" in problem, problem


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="no dpkg here to check against")
def test_the_versions_refused_are_those_dpkg_finds_bad() -> None:
    for version in BAD_VERSIONS:
        if version != version.strip():
            continue  # dpkg strips blanks around a version; apt is given it as it is
        result = subprocess.run(
            ["dpkg", "--validate-version", "--", version], capture_output=True, check=False
        )
        assert result.returncode != 0, f"dpkg takes {version!r}"


def test_spec_defaults_and_contradictions() -> None:
    default = spec()
    assert (default.version, default.state, default.purge) == ("any", "present", False)
    with pytest.raises(ValidationError, match="'version' applies to state 'present'"):
        spec(state="absent", version="1.0")
    with pytest.raises(ValidationError, match="'purge' applies to state 'absent'"):
        spec(purge=True)
    with pytest.raises(ValidationError):
        spec(state="removed")
    with pytest.raises(ValidationError):
        spec(ensure="present")  # unknown fields are errors


# Debian version order

ORDERED = [  # each older than the next (dpkg's own examples and edge cases)
    "~~",
    "~~a",
    "~",
    "0",
    "0.1",
    "1.0~rc1",
    "1.0",
    "1.0-0.1",
    "1.0-1",
    "1.0-1+b1",
    "1.0a",
    "1.0+dfsg",
    "1.00.1",
    "1.1",
    "1.10",
    "2",
    "1:0.1",
    "1:0.1-1",
    "2:0",
]
EQUAL = [("1.0", "0:1.0"), ("1.0", "1.0-0"), ("1.01", "1.1"), ("1.0-1", "1.0-01")]


@pytest.mark.parametrize("version", ["1.0:2", "1:", ":1", "", "1.0-", "1 .0"])
def test_comparing_a_version_dpkg_refuses_is_a_typed_error(version: str) -> None:
    """The spec refuses these; one that slips through (from elsewhere) fails typed, not as
    a ValueError from int()."""
    with pytest.raises(errors.PermanentError, match="not a Debian version"):
        debversion.compare(version, "1.0")
    with pytest.raises(errors.PermanentError, match="not a Debian version"):
        debversion.equal("1.0", version)


def test_versions_order_as_dpkg_orders_them() -> None:
    for older, newer in itertools.pairwise(ORDERED):
        assert debversion.compare(older, newer) < 0, (older, newer)
        assert debversion.compare(newer, older) > 0, (newer, older)
    for a, b in EQUAL:
        assert debversion.equal(a, b), (a, b)


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="no dpkg here to check against")
def test_versions_agree_with_dpkg_compare_versions() -> None:
    pairs = [(a, b) for a in ORDERED[3:] for b in ORDERED[3:]] + EQUAL
    for a, b in pairs:
        ours = debversion.compare(a, b)
        op = "lt" if ours < 0 else "gt" if ours > 0 else "eq"
        result = subprocess.run(["dpkg", "--compare-versions", a, op, b], check=False)
        assert result.returncode == 0, f"dpkg disagrees: {a} {op} {b}"


# The apt and dpkg seam's pure parts


def test_print_uris_lines_are_parsed() -> None:
    output = (
        "Reading package lists...\n"
        "'http://deb.example/pool/n/nginx/nginx_1.22.1-9_amd64.deb' nginx_1.22.1-9_amd64.deb "
        f"612345 SHA256:{'AB' * 32}\n"
        "'file:/srv/repo/./tool_1%3a2.0_all.deb' tool_1%3a2.0_all.deb 10 MD5Sum:00ff\n"
        "'file:/srv/repo/x_1_all.deb' x_1_all.deb 3 \n"
    )
    nginx, tool, bare = apt.parse_uris(output)
    assert nginx == Deb(
        uri="http://deb.example/pool/n/nginx/nginx_1.22.1-9_amd64.deb",
        filename="nginx_1.22.1-9_amd64.deb",
        size=612345,
        sha256="ab" * 32,
    )
    assert (nginx.package, nginx.version, nginx.local_path) == ("nginx", "1.22.1-9", None)
    assert (tool.package, tool.version, tool.sha256) == ("tool", "1:2.0", None)
    assert tool.local_path == Path("/srv/repo/tool_1:2.0_all.deb")
    assert bare.sha256 is None and bare.size == 3


def test_deb_filenames_are_quoted_as_apt_quotes_them() -> None:
    assert apt.deb_filename("tool", "1:2.0-1", "all") == "tool_1%3a2.0-1_all.deb"
    assert apt.deb_filename("nginx", "1.22.1-9", "amd64") == "nginx_1.22.1-9_amd64.deb"


def test_a_held_lock_is_transient_and_names_the_holder() -> None:
    output = (
        "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 "
        "(unattended-upgr)\nE: Unable to acquire the dpkg frontend lock\n"
    )
    error = apt.failure("resource 'x'", ["apt-get", "install", "x"], Finished(100, output))
    assert isinstance(error, errors.TransientError)
    assert "4242 (unattended-upgr)" in str(error) and error.retry_after


def test_other_failures_are_permanent_and_quote_what_apt_said() -> None:
    output = (
        "Reading package lists...\nBuilding dependency tree...\n"
        "The following packages will be REMOVED:\n  rival\n"
        "The following NEW packages will be installed:\n  app\n"
        "E: Packages need to be removed but remove is disabled.\n"
    )
    error = apt.failure("resource 'x'", ["apt-get", "install", "app"], Finished(100, output))
    assert isinstance(error, errors.PermanentError)
    message = str(error)
    assert "REMOVED:\n  rival\nE: Packages need to be removed" in message
    assert "Reading package lists" not in message
    assert "declare the packages listed as REMOVED absent" in message


def test_dpkg_errors_keep_their_indented_lines() -> None:
    output = (
        "Setting up app (1.0) ...\n"
        "dpkg: error processing package app (--configure):\n"
        " installed app package post-installation script subprocess returned error exit status 1\n"
        "Errors were encountered while processing:\n app\n"
    )
    assert apt.explain(output) == output.split("\n", 1)[1].strip()


def test_the_environment_is_unattended_and_finds_sbin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("LANGUAGE", "de")
    env = apt.environment()
    assert env["DEBIAN_FRONTEND"] == "noninteractive" and env["LC_ALL"] == "C.UTF-8"
    assert "LANGUAGE" not in env
    assert env["PATH"].split(":")[:2] == ["/usr/bin", "/bin"]
    assert {"/usr/sbin", "/sbin"} <= set(env["PATH"].split(":"))


async def test_apt_caches_are_forgotten_before_dpkg_lock_is_released(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another of accord's apt runs must not start between a change to dpkg's database and the
    deletion of apt's caches: it would trust the stale pkgcache.bin."""
    ran: list[tuple[str, bool]] = []

    async def run(argv: list[str], *, what: str, limit: float | None = None) -> Finished:
        ran.append((argv[0], apt.exclusive().locked()))
        await asyncio.sleep(0)  # where another task could take the lock
        return Finished(0, "")

    monkeypatch.setattr(apt, "run", run)
    await apt.run_changing(["dpkg", "--remove", "x"], what="test", limit=None)
    assert ran == [("dpkg", True), ("apt-config", True)]


async def test_verified_checks_size_then_digest(tmp_path: Path) -> None:
    data = b"a .deb"
    deb = Deb("file:/x", "x_1_all.deb", len(data), hashlib.sha256(data).hexdigest())
    assert not await debstage.verified(tmp_path, deb)
    (tmp_path / deb.filename).write_bytes(b"a .deX")  # same size, other bytes
    assert not await debstage.verified(tmp_path, deb)
    assert await debstage.missing(tmp_path, [deb]) == [deb]
    source = tmp_path / "source.deb"
    source.write_bytes(data)
    assert await debstage.copy_verified(source, tmp_path / "archives", deb)
    assert await debstage.verified(tmp_path / "archives", deb)
    assert await debstage.missing(tmp_path / "archives", [deb]) == []
    assert sorted(p.name for p in (tmp_path / "archives").iterdir()) == [deb.filename]
    source.write_bytes(b"a .deX")
    assert not await debstage.copy_verified(source, tmp_path / "other", deb)
    assert list((tmp_path / "other").iterdir()) == []


async def _ticks_while(work: Awaitable[object]) -> int:
    """How often a 5 ms heartbeat ran on the event loop while ``work`` ran."""
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    beating = asyncio.create_task(heartbeat())
    await asyncio.sleep(0)
    try:
        await work
    finally:
        beating.cancel()
    return ticks


async def test_hashing_and_copying_debs_leave_the_event_loop_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large .deb takes seconds to hash: meanwhile the agent's heartbeats must go on."""
    data = b"a large .deb"
    deb = Deb("file:/x", "x_1_all.deb", len(data), hashlib.sha256(data).hexdigest())
    (tmp_path / deb.filename).write_bytes(data)
    source = tmp_path / "source.deb"
    source.write_bytes(data)
    hashed = cache.file_sha256

    def slow_sha256(path: Path) -> str:  # accord.providers.cache's helper, as large files take
        time.sleep(0.2)
        return hashed(path)

    def slow_fsync(fd: int) -> None:
        time.sleep(0.2)

    monkeypatch.setattr(cache, "file_sha256", slow_sha256)
    assert await _ticks_while(debstage.verified(tmp_path, deb)) >= 10
    assert await _ticks_while(debstage.missing(tmp_path, [deb, deb])) >= 20
    monkeypatch.setattr(debstage.os, "fsync", slow_fsync)
    assert await _ticks_while(debstage.copy_verified(source, tmp_path / "archives", deb)) >= 10


async def test_a_settled_unchanged_deb_is_hashed_once_for_plans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """staged(), asked on every plan, trusts a digest while the file's size, times and inode
    stay; stage and apply hash every time."""
    data = b"a .deb"
    deb = Deb("file:/x", "x_1_all.deb", len(data), hashlib.sha256(data).hexdigest())
    path = tmp_path / deb.filename
    path.write_bytes(data)
    hashed: list[Path] = []
    real = cache.file_sha256

    def counting(p: Path) -> str:
        hashed.append(p)
        return real(p)

    monkeypatch.setattr(cache, "file_sha256", counting)
    assert await debstage.missing(tmp_path, [deb], memo=True) == []
    assert await debstage.missing(tmp_path, [deb], memo=True) == []
    assert len(hashed) == 2, "a file changed just now may change again unseen: hashed each time"

    monkeypatch.setattr(debstage, "SETTLED", 0.0)  # as if it had been there a while
    hashed.clear()
    for _ in range(3):
        assert await debstage.missing(tmp_path, [deb], memo=True) == []
    assert len(hashed) == 1
    assert await debstage.missing(tmp_path, [deb]) == []  # without the memo: hashed
    assert len(hashed) == 2

    await asyncio.sleep(0.05)  # past the file system's timestamp tick (what SETTLED guards against)
    path.write_bytes(b"a .deX")  # same size and inode, new times: hashed again, found out
    assert await debstage.missing(tmp_path, [deb], memo=True) == [deb]
    assert len(hashed) == 3


def test_the_docs_examples_are_valid_manifests() -> None:
    page = Path(__file__).parents[2] / "docs" / "kinds" / "package.md"
    blocks = re.findall(r"```yaml\n(.*?)```", page.read_text(), re.DOTALL)
    assert len(blocks) >= 4
    for block in blocks:
        manifest = build_manifest(yaml.safe_load(block))
        assert {r.kind for r in manifest.resources} == {"Package"}
