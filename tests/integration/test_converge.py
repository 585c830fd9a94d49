"""The converge run end to end: real files in a tmp root, a real SQLite store."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from accord import errors
from accord.engine.converge import Options
from accord.engine.journal import Journal
from accord.engine.local import LocalSession
from accord.engine.retry import RetryPolicy
from accord.model.manifest import Manifest, StateGoal
from accord.model.plan import Action
from accord.model.status import Phase, RunRecord, RunState
from accord.providers.registry import Registry
from accord.testing.fakes import FakeProvider, Script
from helpers import build_manifest, edit_in_place, fake_resource, file

FAST = RetryPolicy(attempts=3, base=0.001, cap=0.002)


async def converge(
    manifest: Manifest, root: Path, state_dir: Path, *, registry: Registry | None = None,
    allow_commands: bool = False, stop: asyncio.Event | None = None, **options: Any,
) -> RunRecord:  # fmt: skip
    options.setdefault("retry", FAST)
    async with LocalSession(roots=[root], state_dir=state_dir, registry=registry,
                            allow_commands=allow_commands) as session:  # fmt: skip
        _, record = await session.converge(
            manifest, base_dir=root, options=Options(**options), stop=stop
        )
    return record


async def journal_events(state_dir: Path) -> list[dict[str, Any]]:
    async with LocalSession(state_dir=state_dir, lock=False) as session:
        return await Journal(session.store).events()


def tree(root: Path) -> dict[str, tuple[str, bytes | str | None, int]]:
    """Every path under root: type, content or link target, mode."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            found[str(path.relative_to(root))] = ("link", os.readlink(path), 0)
        elif path.is_dir():
            found[str(path.relative_to(root))] = ("dir", None, st.st_mode & 0o7777)
        else:
            found[str(path.relative_to(root))] = ("file", path.read_bytes(), st.st_mode & 0o7777)
    return found


SITE = [
    {"id": "etc", "kind": "Directory", "spec": {"path": "etc/app", "mode": "0750"}},
    file("conf", "etc/app/app.conf", "port = 80\n", mode="0640", depends_on=["etc"]),
    {"id": "link", "kind": "Symlink", "spec": {"path": "etc/app/current", "target": "app.conf"},
     "depends_on": ["conf"]},
]  # fmt: skip


async def test_apply_converges_and_a_second_apply_changes_nothing(
    root: Path, state_dir: Path
) -> None:
    manifest = build_manifest(SITE)
    first = await converge(manifest, root, state_dir)
    assert first.state is RunState.SUCCEEDED and first.changed == 3
    assert (root / "etc/app/app.conf").read_text() == "port = 80\n"
    assert (root / "etc/app/app.conf").stat().st_mode & 0o777 == 0o640
    assert (root / "etc/app").stat().st_mode & 0o777 == 0o750
    assert os.readlink(root / "etc/app/current") == "app.conf"

    before = tree(root)
    events_before = len(await journal_events(state_dir))
    second = await converge(manifest, root, state_dir)
    assert second.state is RunState.SUCCEEDED and second.changed == 0
    assert second.counts == {"applied": 3}
    assert tree(root) == before
    new_events = (await journal_events(state_dir))[events_before:]
    assert [e["event"] for e in new_events] == ["run_started", "run_finished"]


async def test_dry_run_changes_nothing_anywhere(root: Path, state_dir: Path) -> None:
    (root / "etc").mkdir()
    before = tree(root)
    async with LocalSession(roots=[root], state_dir=state_dir) as session:
        plan, record = await session.converge(
            build_manifest(SITE), base_dir=root, options=Options(goal=StateGoal.DRY_RUN)
        )
        assert await session.store.list() == []
        assert await session.store.read("journal") == []
    assert tree(root) == before
    assert [s.change.action for s in plan.steps] == [Action.CREATE] * 3
    assert record.goal is StateGoal.DRY_RUN


async def test_noop_reasons_explain_why(root: Path, state_dir: Path) -> None:
    manifest = build_manifest(SITE)
    await converge(manifest, root, state_dir)
    async with LocalSession(roots=[root], state_dir=state_dir) as session:
        plan, _ = await session.converge(
            manifest, base_dir=root, options=Options(goal=StateGoal.DRY_RUN)
        )
    reasons = [s.change.reason for s in plan.steps]
    assert all(s.change.is_noop for s in plan.steps)
    assert reasons[0] == "directory exists, mode 0750"
    assert reasons[1].startswith("content matches sha256 ") and reasons[1].endswith("mode 0640")
    assert reasons[2] == "links to app.conf"


async def test_drift_is_corrected_and_only_drifted_resources_are_applied(
    root: Path, state_dir: Path
) -> None:
    manifest = build_manifest(SITE)
    await converge(manifest, root, state_dir)
    (root / "etc/app/app.conf").write_text("port = 8080\n")
    record = await converge(manifest, root, state_dir)
    assert record.changed == 1
    assert [(r.id, r.action) for r in record.resources] == [("conf", Action.UPDATE)]
    assert (root / "etc/app/app.conf").read_text() == "port = 80\n"


async def test_prune_removes_created_files_and_restores_adopted_ones(
    root: Path, state_dir: Path
) -> None:
    (root / "motd").write_text("hand-written by the operator\n")
    os.chmod(root / "motd", 0o600)
    manifest = build_manifest([file("motd", "motd", "managed\n"), file("new", "new.txt", "new\n")])
    await converge(manifest, root, state_dir)
    assert (root / "motd").read_text() == "managed\n"

    record = await converge(build_manifest([]), root, state_dir)
    assert record.state is RunState.SUCCEEDED
    assert {r.id: r.phase for r in record.resources} == {"motd": Phase.PRUNED, "new": Phase.PRUNED}
    assert (root / "motd").read_text() == "hand-written by the operator\n"
    assert (root / "motd").stat().st_mode & 0o777 == 0o600
    assert not (root / "new.txt").exists()
    # Pruned resources are forgotten: a third run has nothing to do.
    again = await converge(build_manifest([]), root, state_dir)
    assert again.resources == ()


async def test_prune_goes_in_reverse_dependency_order(root: Path, state_dir: Path) -> None:
    await converge(build_manifest(SITE), root, state_dir)
    record = await converge(build_manifest([]), root, state_dir)
    assert [r.id for r in record.resources] == ["link", "conf", "etc"]
    # etc/app is gone; its parent was created implicitly (like mkdir -p) and is not managed.
    assert [p.name for p in root.iterdir()] == ["etc"] and list((root / "etc").iterdir()) == []


async def test_prune_keeps_a_directory_with_unmanaged_content(root: Path, state_dir: Path) -> None:
    await converge(build_manifest(SITE), root, state_dir)
    (root / "etc/app/operator-notes.txt").write_text("mine\n")
    record = await converge(build_manifest([]), root, state_dir)
    etc = next(r for r in record.resources if r.id == "etc")
    assert etc.phase is Phase.PRUNED and "not empty" in etc.reason
    assert (root / "etc/app/operator-notes.txt").read_text() == "mine\n"


async def test_failure_blocks_only_dependents(
    root: Path, state_dir: Path, registry: Registry, fake: FakeProvider
) -> None:
    fake.scripts["bad"] = Script(permanent=True)
    resources = [
        fake_resource("bad", "1"),
        fake_resource("child", "1", depends_on=("bad",)),
        fake_resource("other", "1"),
    ]
    manifest = build_manifest(resources, registry=registry)
    record = await converge(manifest, root, state_dir, registry=registry)
    phases = {r.id: r.phase for r in record.resources}
    assert phases == {"bad": Phase.FAILED, "child": Phase.BLOCKED, "other": Phase.APPLIED}
    assert record.state is RunState.FAILED
    assert fake.data == {"other": "1"}
    bad = next(r for r in record.resources if r.id == "bad")
    assert bad.error is not None and bad.error.type == "PermanentError"
    ready = next(c for c in record.conditions if c.type == "Ready")
    assert ready.status.value == "False" and "bad" in ready.message


async def test_transient_failures_are_retried_from_a_fresh_observation(
    root: Path, state_dir: Path, registry: Registry, fake: FakeProvider
) -> None:
    fake.scripts["k"] = Script(transient_failures=2)
    manifest = build_manifest([fake_resource("k")], registry=registry)
    record = await converge(manifest, root, state_dir, registry=registry)
    assert record.state is RunState.SUCCEEDED
    assert record.resources[0].attempts == 3
    assert fake.calls.count(("apply", "k")) == 3
    # initial observe, one per retry, one to verify
    assert fake.calls.count(("observe", "k")) == 4
    events = [e["event"] for e in await journal_events(state_dir) if e.get("resource") == "k"]
    assert events == ["applying", "retrying", "retrying", "applied"]


async def test_a_step_that_hangs_times_out(
    root: Path, state_dir: Path, registry: Registry, fake: FakeProvider
) -> None:
    fake.scripts["slow"] = Script(hang=5)
    manifest = build_manifest([fake_resource("slow")], registry=registry)
    record = await converge(manifest, root, state_dir, registry=registry, step_timeout=0.05)
    assert record.resources[0].phase is Phase.FAILED
    assert "timed out after 0.05 s" in (record.resources[0].error.message or "")  # type: ignore[union-attr]


async def test_verification_failure_shows_the_remaining_diff(
    root: Path, state_dir: Path, registry: Registry, fake: FakeProvider
) -> None:
    fake.scripts["s"] = Script(sticky=True)
    manifest = build_manifest([fake_resource("s")], registry=registry)
    record = await converge(manifest, root, state_dir, registry=registry)
    status = record.resources[0]
    assert status.phase is Phase.FAILED
    assert status.error is not None and "verification failed" in status.error.message
    assert status.diff == () or status.diff[0].field == "value"


async def test_revert_policy_puts_back_what_the_run_changed(
    root: Path, state_dir: Path, registry: Registry, fake: FakeProvider
) -> None:
    (root / "a.conf").write_text("original a\n")
    fake.scripts["boom"] = Script(permanent=True)
    manifest = build_manifest([
        file("a", "a.conf", "new a\n"),
        file("b", "b.conf", "new b\n", depends_on=["a"]),
        fake_resource("boom", "1", depends_on=("b",)),
    ], registry=registry)  # fmt: skip
    record = await converge(manifest, root, state_dir, registry=registry, on_failure="revert")
    phases = {r.id: r.phase for r in record.resources}
    assert phases == {"a": Phase.REVERTED, "b": Phase.REVERTED, "boom": Phase.FAILED}
    assert (root / "a.conf").read_text() == "original a\n"
    assert not (root / "b.conf").exists()
    events = [(e["event"], e.get("resource")) for e in await journal_events(state_dir)]
    reverted = [r for ev, r in events if ev == "reverted"]
    assert reverted == ["b", "a"]  # newest first


async def test_commands_are_refused_before_anything_changes(root: Path, state_dir: Path) -> None:
    manifest = build_manifest([
        file("f", "f.txt", "x"),
        {"id": "cmd", "kind": "Command", "spec": {"argv": ["true"]}},
    ])  # fmt: skip
    with pytest.raises(errors.PolicyError, match=r"'cmd'.*--allow-commands"):
        await converge(manifest, root, state_dir)
    assert list(root.iterdir()) == []


async def test_paths_outside_the_root_are_refused_before_anything_changes(
    root: Path, state_dir: Path, tmp_path: Path
) -> None:
    manifest = build_manifest(
        [file("ok", "ok.txt", "x"), file("evil", str(tmp_path / "evil"), "x")]
    )
    with pytest.raises(errors.PathEscapeError, match="'evil'"):
        await converge(manifest, root, state_dir)
    assert list(root.iterdir()) == [] and not (tmp_path / "evil").exists()


async def test_stage_prepares_without_touching_the_live_system(
    root: Path, state_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(b"weights" * 1000)
    import hashlib

    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    spec = {"path": "models/m.bin", "url": source.as_uri(), "sha256": digest}
    manifest = build_manifest([{"id": "model", "kind": "Artifact", "spec": spec}])
    staged = await converge(manifest, root, state_dir, goal=StateGoal.STAGE)
    assert staged.state is RunState.SUCCEEDED
    assert staged.resources[0].phase is Phase.STAGED and staged.resources[0].flag == "staged"
    assert list(root.iterdir()) == []
    assert (state_dir / "cache/sha256" / digest[:2] / digest).is_file()

    source.unlink()  # the network is gone inside the window: apply needs only the cache
    applied = await converge(manifest, root, state_dir)
    assert applied.state is RunState.SUCCEEDED
    assert (root / "models/m.bin").read_bytes() == b"weights" * 1000


async def test_interrupted_run_is_recorded_and_the_next_run_resumes_it(
    root: Path, state_dir: Path, registry: Registry, fake: FakeProvider
) -> None:
    stop = asyncio.Event()
    fake.scripts["k0"] = Script(hang=0.05)
    resources = [fake_resource(f"k{i}", depends_on=(f"k{i - 1}",) if i else ()) for i in range(5)]
    manifest = build_manifest(resources, registry=registry)

    async def press_ctrl_c() -> None:
        await asyncio.sleep(0.01)
        stop.set()

    asyncio.get_running_loop().create_task(press_ctrl_c())
    first = await converge(manifest, root, state_dir, registry=registry, stop=stop)
    assert first.state is RunState.INTERRUPTED
    assert fake.data == {"k0": "v"}  # the running step finished; nothing new started
    assert first.counts == {"applied": 1, "interrupted": 4}

    second = await converge(manifest, root, state_dir, registry=registry)
    assert second.state is RunState.SUCCEEDED and second.resumes == first.run_id
    assert fake.calls.count(("apply", "k0")) == 1  # finished work is not redone


async def test_a_run_left_running_by_a_dead_process_is_marked_crashed(
    root: Path, state_dir: Path
) -> None:
    manifest = build_manifest(SITE)
    async with LocalSession(roots=[root], state_dir=state_dir) as session:
        dead = await Journal(session.store).begin("test", 1, StateGoal.APPLY)
    record = await converge(manifest, root, state_dir)
    assert record.resumes == dead.run_id
    async with LocalSession(state_dir=state_dir, lock=False) as session:
        runs = {r.run_id: r.state for r in await Journal(session.store).runs("test")}
    assert runs == {dead.run_id: RunState.CRASHED, record.run_id: RunState.SUCCEEDED}


async def test_a_second_run_on_the_same_state_dir_is_refused(root: Path, state_dir: Path) -> None:
    async with LocalSession(roots=[root], state_dir=state_dir):
        with pytest.raises(errors.AccordError, match=r"another accord run \(pid \d+\)"):
            async with LocalSession(roots=[root], state_dir=state_dir):
                pass


async def test_adopting_a_converged_path_copies_nothing_and_pruning_leaves_it(
    root: Path, state_dir: Path
) -> None:
    (root / "model.bin").write_bytes(b"big model" * 1000)
    manifest = build_manifest([file("model", "model.bin", "big model" * 1000)])
    record = await converge(manifest, root, state_dir)
    assert record.changed == 0
    assert not (state_dir / "cache").exists()  # no snapshot copy of what was already right

    pruned = await converge(build_manifest([]), root, state_dir)
    assert pruned.resources[0].phase is Phase.PRUNED and "kept" in pruned.resources[0].reason
    assert (root / "model.bin").read_bytes() == b"big model" * 1000


async def test_renaming_a_resource_hands_its_path_over(root: Path, state_dir: Path) -> None:
    """Same path under a new id: a rename, not a removal plus a creation."""
    (root / "motd").write_text("before accord\n")
    await converge(build_manifest([file("banner-a", "motd", "managed\n")]), root, state_dir)
    renamed = await converge(
        build_manifest([file("banner-b", "motd", "managed\n")]), root, state_dir
    )
    assert renamed.state is RunState.SUCCEEDED
    assert (root / "motd").read_text() == "managed\n"  # not restored under the new id's feet
    gone = next(r for r in renamed.resources if r.id == "banner-a")
    assert gone.phase is Phase.PRUNED and "handed over to 'banner-b'" in gone.reason
    # the new id inherited the prior state: removing it for real restores what was there
    await converge(build_manifest([]), root, state_dir)
    assert (root / "motd").read_text() == "before accord\n"


async def test_status_carries_the_providers_details_of_what_it_last_saw(
    root: Path, state_dir: Path, registry: Registry, fake: FakeProvider
) -> None:
    fake.data["kept"] = "already"
    manifest = build_manifest(
        [fake_resource("made", "twelve chars"), fake_resource("kept", "already")],
        registry=registry,
    )
    planned = await converge(manifest, root, state_dir, registry=registry,
                             goal=StateGoal.DRY_RUN)  # fmt: skip
    assert {r.id: r.details for r in planned.resources} == {"made": {}, "kept": {"length": 7}}
    record = await converge(manifest, root, state_dir, registry=registry)
    # "made" reports what verification observed after the apply, not the absent start.
    assert {r.id: r.details for r in record.resources} == {
        "made": {"length": 12}, "kept": {"length": 7},
    }  # fmt: skip


class _UnsureStager(FakeProvider):
    """A fake that stages, and cannot tell whether key ``bad`` is staged."""

    stages = True

    async def staged(self, ctx: Any, spec: Any) -> bool:
        if spec.key == "bad":
            raise errors.PermanentError("cannot read the stage cache")
        return True


async def test_a_failing_staged_check_fails_its_resource_not_the_plan(
    root: Path, state_dir: Path
) -> None:
    registry = Registry.from_entry_points()
    registry.register(_UnsureStager())
    manifest = build_manifest([fake_resource("bad"), fake_resource("good")], registry=registry)
    record = await converge(manifest, root, state_dir, registry=registry)
    assert record.state is RunState.FAILED
    phases = {r.id: (r.phase, r.error.message if r.error else "") for r in record.resources}
    assert phases["bad"] == (Phase.FAILED, "cannot read the stage cache")
    assert phases["good"][0] is Phase.APPLIED


async def test_a_renamed_resource_keeps_what_its_identity_names(
    root: Path, state_dir: Path, registry: Registry, fake: FakeProvider
) -> None:
    """Not only paths: the fake's identity is its key (a unit's or a container's is its name)."""
    fake.data["k"] = "before accord"
    first = build_manifest([fake_resource("k", "mine")], registry=registry)
    assert (await converge(first, root, state_dir, registry=registry)).state is RunState.SUCCEEDED
    renamed = build_manifest(
        [{"id": "renamed", "kind": "Fake", "spec": {"key": "k", "value": "mine"}}],
        registry=registry,
    )
    record = await converge(renamed, root, state_dir, registry=registry)
    assert record.state is RunState.SUCCEEDED
    assert ("delete", "k") not in fake.calls  # not pruned: taken over by the new id
    assert fake.data["k"] == "mine"
    # The new id inherited the prior state: removing it puts back what was there before.
    await converge(build_manifest([], registry=registry), root, state_dir, registry=registry)
    assert fake.data["k"] == "before accord"


class _BrokenSnapshots(FakeProvider):
    """A fake whose snapshot of key ``snap`` and whose delete of key ``undo`` fail."""

    async def snapshot(self, ctx: Any, spec: Any, current: str | None) -> Any:
        if spec.key == "snap":
            raise errors.PermanentError("cannot read the prior state")
        return await super().snapshot(ctx, spec, current)

    async def delete(self, ctx: Any, spec: Any, prior: Any) -> str:
        if spec.key == "undo":
            raise errors.PermanentError("cannot put it back")
        return await super().delete(ctx, spec, prior)


async def test_a_snapshot_that_fails_fails_its_resource_and_the_run(
    root: Path, state_dir: Path
) -> None:
    registry = Registry.from_entry_points()
    registry.register(_BrokenSnapshots())
    manifest = build_manifest([fake_resource("snap"), fake_resource("other")], registry=registry)
    record = await converge(manifest, root, state_dir, registry=registry)
    assert record.state is RunState.FAILED
    failed = {r.id: r.error.message for r in record.resources if r.error}
    assert failed == {"snap": "cannot read the prior state"}
    events = await journal_events(state_dir)
    assert any(e.get("resource") == "snap" and e["event"] == "failed" for e in events)


async def test_a_revert_that_fails_is_reported_and_the_others_are_reverted(
    root: Path, state_dir: Path
) -> None:
    fake = _BrokenSnapshots()
    fake.scripts["boom"] = Script(permanent=True)
    registry = Registry.from_entry_points()
    registry.register(fake)
    resources = [fake_resource(k) for k in ("first", "undo")]
    resources.append(fake_resource("boom", depends_on=("undo",)))
    manifest = build_manifest(resources, registry=registry)
    record = await converge(manifest, root, state_dir, registry=registry, on_failure="revert")
    assert record.state is RunState.FAILED
    phases = {r.id: r.phase for r in record.resources}
    assert phases == {"first": Phase.REVERTED, "undo": Phase.FAILED, "boom": Phase.FAILED}
    assert "first" not in fake.data and fake.data["undo"] == "v"  # undo's change stayed
    events = await journal_events(state_dir)
    assert [e["error"] for e in events if e["event"] == "revert_failed"] == ["cannot put it back"]
    assert events[-1]["event"] == "run_finished"  # not left running


async def test_a_large_artifact_is_not_rehashed_by_no_op_runs_and_edits_are_still_seen(
    root: Path, state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accord.providers import digests

    model = b"w" * digests.LARGE
    source = tmp_path / "model.bin"
    source.write_bytes(model)
    hashed: list[str] = []
    real = digests.file_sha256
    monkeypatch.setattr(digests, "file_sha256", lambda p: hashed.append(str(p)) or real(p))
    monkeypatch.setattr(digests, "RACY_SECONDS", -1.0)  # as if the copy were seconds old
    digest = hashlib.sha256(model).hexdigest()
    spec = {"path": "opt/model.bin", "url": str(source), "sha256": digest}
    manifest = build_manifest([{"id": "model", "kind": "Artifact", "spec": spec}])
    await converge(manifest, root, state_dir)  # places it; verify hashes it (and remembers)
    placed = str(root / "opt/model.bin")
    hashed.clear()
    for _ in range(3):  # no-op runs, as an agent's drift checks are
        record = await converge(manifest, root, state_dir)
        assert record.state is RunState.SUCCEEDED and record.changed == 0
    assert placed not in hashed
    edit_in_place(placed)
    record = await converge(manifest, root, state_dir)
    assert record.changed == 1  # seen (the ctime moved) and put back
    assert (root / "opt/model.bin").read_bytes() == model
