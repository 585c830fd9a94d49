"""The Package kind for real: tiny .debs built here (``tests/debrepo.py``), served from
127.0.0.1, installed into this machine's dpkg database — through the whole engine (stage, a
window without network, apply, verify, revert, prune) and through the provider for failures.

Root, dpkg and apt are needed (CI runs as root); elsewhere the module is skipped with the
reason. One repository for the module; every test starts and ends with no test package.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import debrepo
from accord import errors
from accord.engine.converge import Options
from accord.engine.local import LocalSession
from accord.engine.retry import RetryPolicy
from accord.model.manifest import Manifest, StateGoal
from accord.model.specs import PackageSpec
from accord.model.status import Phase, RunRecord, RunState
from accord.providers import apt, debstage
from accord.providers.base import Context
from accord.providers.package import PackageProvider
from accord.testing.provider_contract import ProviderContract, Sandbox
from debrepo import Pkg, Repo, states
from helpers import build_manifest

pytestmark = pytest.mark.skipif(debrepo.SKIP_REASON is not None, reason=str(debrepo.SKIP_REASON))

FLAG = Path("/tmp") / f"{debrepo.PREFIX}slow"  # while it exists, slow's postinst sleeps
LIB1, LIB11 = Pkg("lib", "1.0"), Pkg("lib", "1.1")
APP1 = Pkg("app", "1.0", "{lib} (>= 1.0)", conffile=True)
APP2 = Pkg("app", "2.0", "{lib} (>= 1.1)", conffile=True)
TOOL = Pkg("tool", "1:2.0-1")  # an epoch: "1%3a2.0-1" in the file name
RIVAL = Pkg("rival", "1.0", conflicts="{app}")
ORPHAN = Pkg("orphan", "1.0", depends="{missing}")
BROKEN = Pkg("broken", "1.0", postinst="echo 'broken: refusing to configure' >&2; exit 1")
SLOW = Pkg("slow", "1.0", postinst=f"if [ -e {FLAG} ]; then sleep 60; fi")
ALL = [LIB1, LIB11, APP1, APP2, TOOL, RIVAL, ORPHAN, BROKEN, SLOW]

P = PackageProvider()
FAST = RetryPolicy(attempts=2, base=0.001, cap=0.002)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    with debrepo.serving(tmp_path_factory.mktemp("apt-repo")) as repo:
        repo.add(*ALL)
        config = repo.configure_apt(repo.http_source())
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("APT_CONFIG", str(config))
            debrepo.purge_all()
            repo.update()
            try:
                yield repo
            finally:
                debrepo.purge_all()


@pytest.fixture(autouse=True)
def clean(repo: Repo) -> Iterator[None]:
    repo.reachable = True
    repo.requests.clear()
    yield
    repo.reachable = True
    FLAG.unlink(missing_ok=True)
    debrepo.purge_all()


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return ProviderContract().context(Sandbox.create(tmp_path)).bind("pkg")


def resource(rid: str, pkg: Pkg, **spec: Any) -> dict[str, Any]:
    depends_on = spec.pop("depends_on", [])
    return {"id": rid, "kind": "Package", "spec": {"name": pkg.name, **spec},
            "depends_on": depends_on}  # fmt: skip


async def converge(manifest: Manifest, root: Path, state_dir: Path, **options: Any) -> RunRecord:
    options.setdefault("retry", FAST)
    async with LocalSession(roots=[root], state_dir=state_dir) as session:
        _, record = await session.converge(manifest, base_dir=root, options=Options(**options))
    return record


def statuses(record: RunRecord) -> dict[str, Any]:
    return {r.id: r for r in record.resources}


async def apt_mark_auto() -> set[str]:
    process = await asyncio.create_subprocess_exec(
        "apt-mark", "showauto", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    return set(out.decode().split())


# Through the engine


async def test_stage_then_apply_in_a_window_without_network(
    repo: Repo, root: Path, state_dir: Path
) -> None:
    manifest = build_manifest([resource("app", APP2, version="2.0")])
    staged = await converge(manifest, root, state_dir, goal=StateGoal.STAGE)
    assert staged.state is RunState.SUCCEEDED, staged
    assert states() == {}, "staging installed something"
    archives = state_dir / "cache" / "apt" / "archives"
    assert {APP2.filename, LIB11.filename} <= {p.name for p in archives.iterdir()}

    repo.reachable = False  # the window: no network
    repo.requests.clear()
    applied = await converge(manifest, root, state_dir)
    assert applied.state is RunState.SUCCEEDED, statuses(applied)["app"].error
    assert repo.requests == [], "apply asked the repository for something"
    assert states() == {APP2.name: "ii 2.0", LIB11.name: "ii 1.1"}
    assert LIB11.name in await apt_mark_auto(), "a dependency is marked automatically installed"
    assert statuses(applied)["app"].details == {"version": "2.0", "architecture": "all"}

    again = await converge(manifest, root, state_dir)
    assert again.state is RunState.SUCCEEDED and again.changed == 0
    assert statuses(again)["app"].details == {"version": "2.0", "architecture": "all"}


async def test_the_window_installs_what_was_staged_when_the_lists_moved_on(
    repo: Repo, root: Path, state_dir: Path
) -> None:
    """Between staging and the window, a daily apt-get update may drop the staged version from
    apt's lists (a mirror keeps only the newest): apply installs the files stage recorded."""
    manifest = build_manifest([resource("app", APP2, version="2.0")])
    staged = await converge(manifest, root, state_dir, goal=StateGoal.STAGE)
    assert staged.state is RunState.SUCCEEDED
    repo.withdraw(APP2)
    try:
        repo.update()
        with pytest.raises(errors.PermanentError, match=r"'2.0' for .* was not found"):
            await apt.print_uris([], [f"{APP2.name}=2.0"], what="apt knows it no more")
        repo.reachable = False
        repo.requests.clear()
        applied = await converge(manifest, root, state_dir)
        asked = list(repo.requests)
    finally:
        repo.republish(APP2)
        repo.reachable = True
        repo.update()
    assert applied.state is RunState.SUCCEEDED, statuses(applied)["app"].error
    assert asked == []
    assert states() == {APP2.name: "ii 2.0", LIB11.name: "ii 1.1"}
    auto = await apt_mark_auto()
    assert LIB11.name in auto and APP2.name not in auto  # as apt would have marked them


async def test_upgrade_and_downgrade_carry_dependencies_along(
    repo: Repo, root: Path, state_dir: Path
) -> None:
    debrepo.install(repo, LIB1, APP1)
    for version, expected in [
        ("1.0", {APP1.name: "ii 1.0", LIB1.name: "ii 1.0"}),  # adopted as it is
        ("2.0", {APP2.name: "ii 2.0", LIB11.name: "ii 1.1"}),  # lib upgraded too
        ("1.0", {APP1.name: "ii 1.0", LIB11.name: "ii 1.1"}),  # lib 1.1 still satisfies
    ]:
        record = await converge(
            build_manifest([resource("app", APP1, version=version)]), root, state_dir
        )
        assert record.state is RunState.SUCCEEDED, statuses(record)["app"].output
        assert states() == expected, version


async def test_a_failed_window_is_reverted_without_network(
    repo: Repo, root: Path, state_dir: Path
) -> None:
    debrepo.install(repo, LIB1, APP1)
    manifest = build_manifest(
        [resource("app", APP2, version="2.0"), resource("broken", BROKEN, depends_on=["app"])]
    )
    staged = await converge(manifest, root, state_dir, goal=StateGoal.STAGE)
    assert staged.state is RunState.SUCCEEDED

    repo.reachable = False
    repo.requests.clear()
    record = await converge(manifest, root, state_dir, on_failure="revert")
    assert repo.requests == []
    assert record.state is RunState.FAILED
    by_id = statuses(record)
    assert by_id["broken"].phase is Phase.FAILED
    assert by_id["broken"].error is not None
    assert "post-installation script" in by_id["broken"].error.message
    assert by_id["app"].phase is Phase.REVERTED, by_id["app"]
    # app and the lib it upgraded are back at 1.0, from the .debs staged for that purpose;
    # broken is left as dpkg left it, and the next plan says so.
    assert states() == {
        APP1.name: "ii 1.0",
        LIB1.name: "ii 1.0",
        BROKEN.name: "iF 1.0",
    }
    plan = await converge(manifest, root, state_dir, goal=StateGoal.DRY_RUN)
    assert "broken" in statuses(plan) and "half-configured" in statuses(plan)["broken"].reason


async def test_remove_keeps_config_files_purge_removes_them(root: Path, state_dir: Path) -> None:
    await converge(build_manifest([resource("app", APP2)]), root, state_dir)
    assert APP2.conffile_path.exists()

    removed = await converge(build_manifest([resource("app", APP2, state="absent")]), root,
                             state_dir)  # fmt: skip
    assert removed.state is RunState.SUCCEEDED
    assert states() == {APP2.name: "rc 2.0", LIB11.name: "ii 1.1"}
    assert APP2.conffile_path.exists()

    purged = await converge(
        build_manifest([resource("app", APP2, state="absent", purge=True)]), root, state_dir
    )
    assert purged.state is RunState.SUCCEEDED
    assert states() == {LIB11.name: "ii 1.1"}
    assert not APP2.conffile_path.exists()


async def test_pruning_hands_back_what_was_there(root: Path, state_dir: Path, repo: Repo) -> None:
    # Nothing was there: pruning purges the package and the dependency it pulled in.
    await converge(build_manifest([resource("app", APP2)]), root, state_dir)
    assert set(states()) == {APP2.name, LIB11.name}
    pruned = await converge(build_manifest([]), root, state_dir)
    assert pruned.state is RunState.SUCCEEDED
    assert states() == {}

    # The dependency was there already (someone else's): it stays.
    debrepo.install(repo, LIB11)
    other = state_dir.parent / "other-state"
    await converge(build_manifest([resource("app", APP2)]), root, other)
    await converge(build_manifest([]), root, other)
    assert states() == {LIB11.name: "ii 1.1"}


# Through the provider


async def test_a_file_repository_is_staged_by_copying(
    repo: Repo, ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """apt uses a file: repository's .debs in place; stage copies them into accord's cache, so
    apply does not need the repository (a USB stick, a share) to be there any more."""
    config = repo.configure_apt(repo.file_source(), name="apt-file")
    repo.update(config)
    monkeypatch.setenv("APT_CONFIG", str(config))
    spec = PackageSpec(name=TOOL.name, version="1:2.0-1")
    memo = await P.snapshot(ctx, spec, await P.observe(ctx, spec))
    await P.stage(ctx, spec)
    assert (debstage.archives(ctx) / TOOL.filename).is_file()  # "1%3a2.0-1": apt's quoting
    assert await P.staged(ctx, spec)

    away = repo.directory.with_name("repo-away")
    repo.directory.rename(away)
    try:
        await P.apply(ctx, spec, await P.observe(ctx, spec))
    finally:
        away.rename(repo.directory)
    assert states() == {TOOL.name: "ii 1:2.0-1"}
    assert P.diff(spec, await P.observe(ctx, spec)).is_noop
    assert await P.delete(ctx, spec, memo) == f"purged {TOOL.name}"
    assert states() == {}


async def test_a_version_newer_than_the_lists_refreshes_them(repo: Repo, ctx: Context) -> None:
    late = Pkg("late", "1.0")
    repo.add(late)  # published after this machine's lists were fetched
    spec = PackageSpec(name=late.name, version="1.0")
    assert not await P.staged(ctx, spec)
    await P.stage(ctx, spec)  # runs apt-get update once, then finds it
    assert await P.staged(ctx, spec)
    await P.apply(ctx, spec, await P.observe(ctx, spec))
    assert states() == {late.name: "ii 1.0"}

    missing = PackageSpec(name=late.name, version="9.9")
    with pytest.raises(errors.PermanentError, match=r"'9.9' for .* was not found(.|\n)*refreshed"):
        await P.stage(ctx, missing)


async def test_offline_stage_keeps_what_it_can_and_revert_says_what_it_cannot(
    repo: Repo, ctx: Context
) -> None:
    """Keeping the installed version's .deb for a revert is best effort: offline, stage still
    succeeds, says what it could not keep, and counts as done; apply and delete then say
    honestly that the version cannot be put back."""
    debrepo.install(repo, TOOL)
    notes: list[str] = []
    ctx = ctx.bind(ctx.resource_id, output=notes.append)
    spec = PackageSpec(name=TOOL.name, state="absent")
    current = await P.observe(ctx, spec)
    memo = await P.snapshot(ctx, spec, current)
    repo.reachable = False
    assert not await P.staged(ctx, spec)
    lists_lock = repo.apt_config.parent / "lists" / "lock"
    with open(lists_lock, "w") as lock:  # noqa: ASYNC230 - only a lock
        fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # apt-get update elsewhere: try again
        with pytest.raises(errors.TransientError, match="held by another program"):
            await P.stage(ctx, spec)
    assert not await P.staged(ctx, spec)
    await P.stage(ctx, spec)
    assert f"could not keep the .deb of {TOOL.name} 1:2.0-1" in "\n".join(notes), notes
    assert await P.staged(ctx, spec), "staged() waits for a .deb stage could not get"

    notes.clear()
    await P.apply(ctx, spec, current)
    assert states() == {}
    assert f"a revert cannot put back {TOOL.name} 1:2.0-1" in "\n".join(notes), notes
    with pytest.raises(errors.PermanentError) as caught:
        await P.delete(ctx, spec, memo)
    message = str(caught.value)
    assert f"cannot put back {TOOL.name} installed 1:2.0-1 (it is absent)" in message, message
    assert "staging could not keep it" in message and "refreshing apt's lists" in message
    assert states() == {}


@pytest.mark.parametrize("start", ["installed", "config-files"])
async def test_a_prior_version_gone_from_the_mirror_does_not_fail_stage(
    repo: Repo, ctx: Context, start: str
) -> None:
    """apt's lists still name the version there is, the mirror no longer has it: the download
    fails, and the refreshed lists do not name it either. Stage keeps the rest."""
    old, new = Pkg(f"solo-{start}", "1.0", conffile=True), Pkg(f"solo-{start}", "2.0")
    repo.add(old, new)
    repo.update()
    debrepo.install(repo, old)
    if start == "config-files":
        debrepo.dpkg("--remove", old.name)
    repo.withdraw(old)
    repo.deb(old).unlink()  # apt's lists are not refreshed: they still name 1.0
    notes: list[str] = []
    ctx = ctx.bind(ctx.resource_id, output=notes.append)
    spec = PackageSpec(name=new.name, version="2.0")
    current = await P.observe(ctx, spec)
    memo = await P.snapshot(ctx, spec, current)
    await P.stage(ctx, spec)
    assert (debstage.archives(ctx) / new.filename).is_file()
    assert f"could not keep the .deb of {old.name} 1.0" in "\n".join(notes), notes
    assert await P.staged(ctx, spec)

    repo.reachable = False
    await P.apply(ctx, spec, current)
    assert states() == {new.name: "ii 2.0"}
    with pytest.raises(errors.PermanentError) as caught:
        await P.delete(ctx, spec, memo)
    message = str(caught.value)
    assert f"cannot put back {old.name} {start} 1.0 (it is installed 2.0)" in message, message
    assert "staging could not keep it" in message, message
    assert states() == {new.name: "ii 2.0"}


async def test_a_corrupt_staged_deb_is_refused_not_unpacked(ctx: Context) -> None:
    spec = PackageSpec(name=TOOL.name)
    await P.stage(ctx, spec)
    staged = debstage.archives(ctx) / TOOL.filename
    data = bytearray(staged.read_bytes())
    data[-10] ^= 0xFF  # same size: apt itself would take it
    staged.write_bytes(bytes(data))
    assert not await P.staged(ctx, spec)
    with pytest.raises(errors.PermanentError, match=f"not staged .*{TOOL.filename}"):
        await P.apply(ctx, spec, await P.observe(ctx, spec))
    assert states() == {}
    await P.stage(ctx, spec)  # replaces the bad copy
    await P.apply(ctx, spec, await P.observe(ctx, spec))
    assert states() == {TOOL.name: "ii 1:2.0-1"}


async def test_dpkg_lock_held_elsewhere_is_transient(repo: Repo, ctx: Context) -> None:
    debrepo.install(repo, TOOL)
    spec = PackageSpec(name=TOOL.name, state="absent")
    current = await P.observe(ctx, spec)
    with open("/var/lib/dpkg/lock-frontend", "w") as lock:  # noqa: ASYNC230 - only a lock
        fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(errors.TransientError, match=f"held by .*{os.getpid()}") as caught:
            await P.apply(ctx, spec, current)
    assert caught.value.retry_after
    await P.apply(ctx, spec, current)  # the retry
    assert states() == {}


async def test_a_held_package_is_refused_not_overridden(repo: Repo, ctx: Context) -> None:
    debrepo.install(repo, LIB1, APP1)
    debrepo.run(["apt-mark", "hold", APP1.name])
    spec = PackageSpec(name=APP1.name, version="2.0")
    current = await P.observe(ctx, spec)
    assert "held" in P.diff(spec, current).reason
    assert P.details(spec, current)["held"] is True
    with pytest.raises(errors.PermanentError, match="apt-mark unhold"):
        await P.apply(ctx, spec, current)
    assert states()[APP1.name] == "hi 1.0"


async def test_a_conflict_is_refused_naming_what_would_go(repo: Repo, ctx: Context) -> None:
    debrepo.install(repo, LIB1, APP1)
    spec = PackageSpec(name=RIVAL.name)
    with pytest.raises(errors.PermanentError, match=f"REMOVED:\n +{APP1.name}"):
        await P.stage(ctx, spec)
    assert not await P.staged(ctx, spec)
    assert set(states()) == {APP1.name, LIB1.name}


async def test_unmet_dependencies_are_permanent_and_named(ctx: Context) -> None:
    with pytest.raises(errors.PermanentError, match=f"{ORPHAN.name} : Depends: .*missing"):
        await P.stage(ctx, PackageSpec(name=ORPHAN.name))


async def test_removing_what_others_need_is_refused_naming_them(repo: Repo, ctx: Context) -> None:
    debrepo.install(repo, LIB1, APP1)
    spec = PackageSpec(name=LIB1.name, state="absent")
    with pytest.raises(errors.PermanentError, match=f"{APP1.name} depends on {LIB1.name}"):
        await P.apply(ctx, spec, await P.observe(ctx, spec))
    assert set(states()) == {APP1.name, LIB1.name}


async def test_a_timed_out_install_is_killed_and_the_next_apply_finishes_it(
    ctx: Context,
) -> None:
    FLAG.touch()
    spec = PackageSpec(name=SLOW.name, timeout=1)
    await P.stage(ctx, spec)
    with pytest.raises(errors.PermanentError, match="timed out after 1 s"):
        await P.apply(ctx, spec, await P.observe(ctx, spec))
    current = await P.observe(ctx, spec)
    assert current is not None and current.status == "half-configured"
    assert P.diff(spec, current).fields[0].field == "status"

    FLAG.unlink()
    spec = PackageSpec(name=SLOW.name)
    await P.apply(ctx, spec, current)
    assert states() == {SLOW.name: "ii 1.0"}


async def test_apt_forgets_its_cache_whenever_dpkg_changes_things(repo: Repo, ctx: Context) -> None:
    """apt trusts pkgcache.bin while dpkg's status file keeps its size and mtime (seconds); a
    quick change of the same size would go unnoticed, so every change deletes the cache."""
    pkgcache = repo.apt_config.parent / "cache" / "pkgcache.bin"
    spec = PackageSpec(name=TOOL.name)
    await P.stage(ctx, spec)
    assert pkgcache.is_file()
    await P.apply(ctx, spec, await P.observe(ctx, spec))  # apt-get install
    assert not pkgcache.exists()
    absent = PackageSpec(name=TOOL.name, state="absent")
    await P.stage(ctx, absent)  # apt resolves what to keep for a revert
    assert pkgcache.is_file()
    await P.apply(ctx, absent, await P.observe(ctx, absent))  # dpkg --remove
    assert not pkgcache.exists()
