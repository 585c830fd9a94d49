"""The provider contract: the tests that every provider must pass, built-in or third-party.

A provider earns its place (habit 2) by subclassing :class:`ProviderContract` in its test module
and declaring three things: the ``provider`` instance, the ``desired`` specs it should converge
to, and the ``starts`` — named starting states that arrange a fresh tmp tree before each test.
Every test runs once per (desired, start) pair. A third-party kind looks like this::

    from accord.errors import PermanentError
    from accord.testing.provider_contract import ABSENT, Desired, ProviderContract, Start

    class TestMotd(ProviderContract):
        provider = MotdProvider()
        desired = [Desired("hello", lambda sandbox: MotdSpec(path="etc/motd", text="hello"))]
        starts = [
            ABSENT,
            Start("stale", lambda sandbox: sandbox.write("etc/motd", b"old\\n")),
            Start("in-the-way", lambda sandbox: sandbox.mkdir("etc/motd"), refuses=PermanentError),
        ]

Run it with plain pytest (``asyncio_mode = "auto"`` for pytest-asyncio). Class attributes tune it:
``allow_commands``, ``reapply_touches`` and ``known_failures``; see :class:`ProviderContract`.

Each test gets a :class:`Sandbox` in a fresh temporary directory: ``root`` (the only root of the
run), ``outside`` (beside the root, outside it: for links and escapes), ``sources`` (the
``base_dir`` that relative sources resolve against; a ``file://`` URL may point here too; write
them with ``sandbox.source``) and ``state`` (``state_dir``, with the cache under ``state/cache``).
``Desired.make`` builds the spec and may write what it needs (source blobs, a working
directory); then ``Start.arrange`` sets up the starting state. Override
:meth:`ProviderContract.context` to change how the :class:`~accord.providers.base.Context` is
built, and :meth:`ProviderContract.withdraw_sources` if your sources live elsewhere.

Sandboxes are made in ``$ACCORD_TEST_TMPDIR``, else in ``/dev/shm`` where that is a writable
directory (a suite makes a thousand small trees and fsyncs: seconds on a disk, milliseconds in
memory), else in the system's temporary directory. Each is removed after its test; a failure
prints what differs.

What the suite checks, for every pair (see :mod:`accord.providers.base` for the contract):

* ``observe`` is read-only (paths, types, bytes, modes, owners, link targets and mtimes of the
  whole sandbox are unchanged) and returns equal states when asked twice;
* ``diff`` is pure: equal inputs give equal changes, inputs are not mutated, the disk is not
  read; every verdict has a reason; ``None`` (absent) is a ``create``; an ``update`` names the
  fields that differ; a no-op names none;
* ``stage`` changes nothing live, is idempotent, and ``staged()`` is true after it;
* after ``stage``, ``apply`` converges with the sources gone (re-observing gives a no-op), and
  touches nothing outside the roots; a start declared with ``refuses=`` makes ``apply`` raise
  that error and change nothing;
* ``apply`` on the converged state is harmless: same tree (mtimes included, unless the class
  sets ``reapply_touches``), still a no-op;
* for ``reversible`` providers: the snapshot is JSON-serializable, and ``delete(prior=snapshot)``
  after ``apply`` restores the start exactly (mtimes aside; parent directories that ``apply``
  made on the way may stay). ``delete(prior=None)`` only removes — one entry, and under it only
  what ``apply`` made — after which the resource observes as absent (a ``create``), unless it
  kept everything (a directory holding unmanaged entries). A class that sets ``several_things``
  (a unit: its file, its drop-in directory, its enablement link, its process) may remove one
  entry per thing, each held to the same rule. Both deletes are idempotent.
  Non-reversible providers' ``delete`` must leave the tree alone;
* every failure is an :class:`~accord.errors.AccordError`: any other exception from any phase
  fails the test, naming the phase.

Observed states must compare by value (frozen dataclasses or pydantic models do). A case that
fails for a known bug is listed in ``known_failures`` (a strict xfail) until the bug is fixed.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from accord import errors
from accord.model.plan import Action, Change
from accord.model.specs import Spec
from accord.providers.base import Context, Memo, Provider
from accord.providers.cache import Cache
from accord.providers.paths import Roots

__all__ = [
    "ABSENT",
    "Case",
    "Desired",
    "KnownFailure",
    "Node",
    "ProviderContract",
    "Sandbox",
    "Start",
    "tree",
    "tree_changes",
]

T = TypeVar("T")
AnyProvider = Provider[Any, Any]


# The tmp tree


@dataclass(frozen=True, slots=True)
class Node:
    """One entry of a tree: what it is, its bits and owner, its bytes or link target."""

    type: str  # file | directory | symlink | other
    mode: int
    uid: int
    gid: int
    data: bytes | str | None = None  # a file's bytes or a link's target
    mtime_ns: int | None = None  # None when the snapshot leaves mtimes out


def tree(top: Path, *, mtimes: bool = True) -> dict[str, Node]:
    """Every entry under ``top`` (``top`` itself is ``"."``), never following a link."""
    nodes: dict[str, Node] = {}

    def visit(path: Path, name: str) -> None:
        st = os.lstat(path)
        data: bytes | str | None = None
        if stat.S_ISLNK(st.st_mode):
            kind, data = "symlink", os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            kind, data = "file", path.read_bytes()
        elif stat.S_ISDIR(st.st_mode):
            kind = "directory"
        else:
            kind = "other"
        nodes[name] = Node(
            type=kind,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            data=data,
            mtime_ns=st.st_mtime_ns if mtimes else None,
        )
        if kind == "directory":
            for child in sorted(os.listdir(path)):
                visit(path / child, child if name == "." else f"{name}/{child}")

    if os.path.lexists(top):
        visit(top, ".")
    return nodes


def tree_changes(before: Mapping[str, Node], after: Mapping[str, Node]) -> list[str]:
    """Readable lines for what differs between two trees (for assertion messages)."""
    lines = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            lines.append(f"+ {name} ({new})")
        elif new is None:
            lines.append(f"- {name} ({old})")
        else:
            lines.append(f"~ {name}: {old} -> {new}")
    return lines


def _assert_same(before: Mapping[str, Node], after: Mapping[str, Node], what: str) -> None:
    changes = tree_changes(before, after)
    assert not changes, f"{what}:\n  " + "\n  ".join(changes)


@dataclass(frozen=True, slots=True)
class Sandbox:
    """One test's directories under ``base``, with helpers to arrange a starting state.

    ``write``, ``mkdir`` and ``link`` take paths relative to ``root``; ``source`` writes under
    ``sources``. All create missing parent directories.
    """

    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def outside(self) -> Path:
        return self.base / "outside"

    @property
    def sources(self) -> Path:
        return self.base / "sources"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def cache(self) -> Cache:
        return Cache(self.state / "cache")

    @classmethod
    def create(cls, base: Path) -> Sandbox:
        sandbox = cls(base)
        for directory in (sandbox.root, sandbox.outside):  # sources and state: when needed
            directory.mkdir(parents=True, exist_ok=True)
        return sandbox

    def write(
        self, path: str, data: bytes, *, mode: int = 0o644, uid: int = -1, gid: int = -1
    ) -> Path:
        full = self.root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)
        os.chmod(full, mode)
        if uid != -1 or gid != -1:
            os.chown(full, uid, gid)
        return full

    def mkdir(self, path: str, *, mode: int = 0o755, uid: int = -1, gid: int = -1) -> Path:
        full = self.root / path
        full.mkdir(parents=True, exist_ok=True)
        os.chmod(full, mode)
        if uid != -1 or gid != -1:
            os.chown(full, uid, gid)
        return full

    def source(self, name: str, data: bytes) -> Path:
        """Write a source file under ``sources`` (the context's ``base_dir``)."""
        full = self.sources / name
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)
        return full

    def link(self, path: str, target: str | Path) -> Path:
        full = self.root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, full)
        return full


# Cases


@dataclass(frozen=True, slots=True)
class Desired:
    """A named desired spec. ``make`` returns it and may write what it needs (sources)."""

    name: str
    make: Callable[[Sandbox], Spec]
    _: KW_ONLY
    marks: Sequence[pytest.MarkDecorator] = ()


def _nothing(sandbox: Sandbox) -> None:
    """Arrange nothing: the managed thing is absent."""


@dataclass(frozen=True, slots=True)
class Start:
    """A named starting state.

    Attributes:
        arrange: sets the state up in a fresh sandbox (after ``Desired.make``); what it
            returns is ignored, so the sandbox helpers can be called from a lambda.
        refuses: the error ``apply`` must raise from this state (changing nothing), if any.
        expect: the action ``diff`` must give from this state, when it is the same for every
            desired spec of the class.
        marks: pytest marks for every test of this start (e.g. a loud skip).
    """

    name: str
    arrange: Callable[[Sandbox], object]
    _: KW_ONLY
    refuses: type[errors.AccordError] | None = None
    expect: Action | None = None
    marks: Sequence[pytest.MarkDecorator] = ()


@dataclass(frozen=True, slots=True)
class KnownFailure:
    """A contract test that fails for a known provider bug: marked ``xfail(strict=True)``, so
    it fails loudly once the bug is fixed and the entry must go. ``test`` and ``case`` are
    :func:`fnmatch.fnmatchcase` patterns over the test's name and the case id
    (``"<desired>-<start>"``)."""

    test: str
    case: str
    reason: str


ABSENT = Start("absent", _nothing, expect=Action.CREATE)
"""Nothing there at all."""


@dataclass(frozen=True, slots=True)
class Case:
    """One (desired, start) pair: the parameter of every contract test."""

    desired: Desired
    start: Start

    @property
    def id(self) -> str:
        return f"{self.desired.name}-{self.start.name}"


# The suite


class ProviderContract:
    """Every provider's test class inherits these tests and declares its cases.

    Attributes:
        provider: the provider under test.
        desired: the desired specs; every test runs for each of them...
        starts: ...from each of these starting states.
        allow_commands: what the default :meth:`context` passes on (``Command`` needs it).
        reapply_touches: set when a repeated ``apply`` legitimately rewrites (a guarded command
            run again, a link re-made): the tree must then be equal but for mtimes.
        several_things: set when one resource manages several things in different places
            (a unit's file, drop-ins, enablement link and process): ``delete(prior=None)``
            may then remove one entry per thing rather than one entry in all.
        known_failures: cases that fail for a known bug, as strict xfails.
    """

    provider: ClassVar[AnyProvider]
    desired: ClassVar[Sequence[Desired]]
    starts: ClassVar[Sequence[Start]]
    allow_commands: ClassVar[bool] = False
    reapply_touches: ClassVar[bool] = False
    several_things: ClassVar[bool] = False
    known_failures: ClassVar[Sequence[KnownFailure]] = ()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "case" not in metafunc.fixturenames:
            return
        cls = type(self)
        for attribute in ("provider", "desired", "starts"):
            if not getattr(cls, attribute, None):
                raise TypeError(f"{cls.__name__} must set {attribute!r} (see provider_contract)")
        name = metafunc.function.__name__
        params = []
        for case in (Case(d, s) for d in self.desired for s in self.starts):
            marks = [*case.desired.marks, *case.start.marks]
            marks += [
                pytest.mark.xfail(strict=True, reason=known.reason)
                for known in self.known_failures
                if fnmatch.fnmatchcase(name, known.test)
                and fnmatch.fnmatchcase(case.id, known.case)
            ]
            params.append(pytest.param(case, id=case.id, marks=marks))
        metafunc.parametrize("case", params)

    @pytest.fixture
    def sandbox(self) -> Iterator[Sandbox]:
        # Not tmp_path: pytest would keep a thousand trees per run for later sessions to sweep.
        with tempfile.TemporaryDirectory(prefix="accord-contract-", dir=_sandbox_parent()) as base:
            yield Sandbox.create(Path(base).resolve())

    # Hooks a provider's test class may override

    def context(self, sandbox: Sandbox) -> Context:
        """The run's context on the sandbox; the suite binds it to a resource id."""
        return Context(
            roots=Roots([sandbox.root]),
            state_dir=sandbox.state,
            cache=sandbox.cache,
            base_dir=sandbox.sources,
            allow_commands=self.allow_commands,
        )

    def live_extra(self, sandbox: Sandbox) -> dict[str, Node]:
        """Live state the provider manages beyond the sandbox's files, e.g. a package database
        or a container engine (its stand-in): one entry per thing, ``Node(type="other", ...,
        data=<its observable state as text>)``. The suite treats it as part of the live system
        (unchanged by observe and stage, restored by delete, ...). Default: nothing."""
        return {}

    def withdraw_sources(self, sandbox: Sandbox) -> None:
        """Make every source unreachable: the "network is gone" after staging."""
        if sandbox.sources.exists():
            shutil.rmtree(sandbox.sources)

    # Tests

    async def test_observe_and_diff_change_nothing_and_explain_themselves(
        self, case: Case, sandbox: Sandbox
    ) -> None:
        ctx, spec = self._arrange(case, sandbox)
        before = tree(sandbox.base)
        current = await self._observe(ctx, spec)
        again = await self._observe(ctx, spec)
        _assert_same(before, tree(sandbox.base), "observe changed the sandbox")
        assert current == again, f"observe is not repeatable: {current!r} then {again!r}"

        spec_before, current_before = spec.model_dump(), copy.deepcopy(current)
        change = self._diff(spec, current)
        assert isinstance(change, Change)
        assert self._diff(spec, current) == change, "diff is not deterministic"
        assert self._diff(copy.deepcopy(spec), copy.deepcopy(current)) == change
        _assert_same(before, tree(sandbox.base), "diff changed the sandbox")
        assert spec.model_dump() == spec_before, "diff mutated the spec"
        assert current == current_before, "diff mutated the observed state"
        away = sandbox.base / "root-moved-away"
        sandbox.root.rename(away)  # diff works on its arguments, not on the disk
        try:
            assert self._diff(spec, current) == change, "diff read the disk"
        finally:
            away.rename(sandbox.root)

        assert change.reason.strip(), f"{change.action} without a reason"
        assert change.describe().startswith(change.reason)
        if current is None:
            assert change.action is Action.CREATE, "an absent resource must be created"
        if change.is_noop:
            assert change.fields == (), "a no-op lists no differing fields"
        if change.action is Action.UPDATE:
            assert change.fields, "an update names the fields that differ"
            for field in change.fields:
                assert field.field, f"unnamed field in {change.describe()}"
                assert field.current != field.desired, f"{field.field} does not differ"
        if case.start.expect is not None:
            assert change.action is case.start.expect, change.describe()

    async def test_stage_is_idempotent_and_leaves_the_live_system_alone(
        self, case: Case, sandbox: Sandbox
    ) -> None:
        ctx, spec = self._arrange(case, sandbox)
        live = self._live(sandbox)
        await self._stage(ctx, spec)
        assert await self._staged(ctx, spec), "staged() is false right after stage()"
        state = tree(sandbox.state, mtimes=False)
        await self._stage(ctx, spec)
        assert await self._staged(ctx, spec), "staged() is false after a second stage()"
        _assert_same(state, tree(sandbox.state, mtimes=False), "a second stage changed the state")
        _assert_same(live, self._live(sandbox), "stage changed the live system")

    async def test_apply_after_stage_converges_without_the_source_and_again_is_harmless(
        self, case: Case, sandbox: Sandbox
    ) -> None:
        ctx, spec = self._arrange(case, sandbox)
        outside = tree(sandbox.outside)
        if case.start.refuses is not None:
            await self._refused(case, ctx, spec, sandbox)
            await self._refused(case, ctx, spec, sandbox)  # and again, the same way
            return
        await self._converge(ctx, spec, sandbox)
        current = await self._observe(ctx, spec)
        change = self._diff(spec, current)
        assert change.is_noop, f"not converged after apply: {change.describe()}"
        assert change.reason.strip(), "a no-op without a reason"
        _assert_same(outside, tree(sandbox.outside), "apply changed something outside the roots")

        mtimes = not self.reapply_touches
        converged = self._live(sandbox, mtimes=mtimes)
        await self._apply(ctx, spec, current)  # not needed (a no-op), but must be harmless
        _assert_same(converged, self._live(sandbox, mtimes=mtimes), "a second apply changed things")
        change = self._diff(spec, await self._observe(ctx, spec))
        assert change.is_noop, f"a second apply undid convergence: {change.describe()}"

    async def test_delete_with_the_snapshot_restores_the_start(
        self, case: Case, sandbox: Sandbox
    ) -> None:
        ctx, spec = self._arrange(case, sandbox)
        start = self._live(sandbox, mtimes=False)
        memo = await self._snapshot(ctx, spec, await self._observe(ctx, spec))
        assert json.loads(json.dumps(memo)) == memo, f"snapshot is not JSON data: {memo!r}"
        memo = json.loads(json.dumps(memo))  # what the engine hands back after storing it
        if case.start.refuses is not None:
            await self._refused(case, ctx, spec, sandbox)
        else:
            await self._converge(ctx, spec, sandbox)
        applied = self._live(sandbox, mtimes=False)
        note = await self._delete(ctx, spec, memo)
        assert note is None or note.strip(), "delete returned an empty note"
        restored = self._live(sandbox, mtimes=False)
        if not self.provider.reversible:
            _assert_same(applied, restored, "delete of an irreversible resource changed things")
        else:
            made = _parents_made(start, applied)
            left = {name: node for name, node in restored.items() if name not in made}
            _assert_same(start, left, "delete(prior=snapshot) did not restore the start")
        await self._delete(ctx, spec, memo)
        _assert_same(restored, self._live(sandbox, mtimes=False), "a second delete changed things")

    async def test_delete_without_a_prior_removes_what_apply_made(
        self, case: Case, sandbox: Sandbox
    ) -> None:
        ctx, spec = self._arrange(case, sandbox)
        if case.start.refuses is not None:  # nothing was applied: see the snapshot test
            await self._refused(case, ctx, spec, sandbox)
            return
        start = self._live(sandbox, mtimes=False)
        await self._converge(ctx, spec, sandbox)
        applied = self._live(sandbox, mtimes=False)
        await self._delete(ctx, spec, None)
        after = self._live(sandbox, mtimes=False)
        if not self.provider.reversible:
            _assert_same(applied, after, "delete of an irreversible resource changed things")
        else:
            _assert_removed_one_thing(start, applied, after, several=self.several_things)
            change = self._diff(spec, await self._observe(ctx, spec))
            gone = change.action is Action.CREATE
            assert gone or after == applied, (
                f"delete(prior=None) neither removed the resource nor kept it: {change.describe()}"
            )
        await self._delete(ctx, spec, None)
        _assert_same(after, self._live(sandbox, mtimes=False), "a second delete changed things")

    async def test_failures_without_the_source_are_typed(
        self, case: Case, sandbox: Sandbox
    ) -> None:
        ctx, spec = self._arrange(case, sandbox)
        self.withdraw_sources(sandbox)
        current = await self._observe(ctx, spec)
        try:
            await self._stage(ctx, spec)
        except errors.AccordError:
            assert not await self._staged(ctx, spec), "staged() is true but stage() failed"
        else:
            assert await self._staged(ctx, spec), "staged() is false right after stage()"
        try:
            await self._apply(ctx, spec, current)
        except errors.AccordError as exc:
            if case.start.refuses is not None:
                assert isinstance(exc, case.start.refuses), repr(exc)
        else:
            assert case.start.refuses is None, f"apply did not refuse {case.start.name}"
            change = self._diff(spec, await self._observe(ctx, spec))
            assert change.is_noop, f"apply returned but did not converge: {change.describe()}"

    # Helpers

    def _arrange(self, case: Case, sandbox: Sandbox) -> tuple[Context, Spec]:
        spec = case.desired.make(sandbox)
        assert isinstance(spec, self.provider.spec_model), f"{spec!r} is not a {self.kind} spec"
        case.start.arrange(sandbox)
        return self.context(sandbox).bind(f"contract-{case.desired.name}"), spec

    @property
    def kind(self) -> str:
        return self.provider.kind

    def _live(self, sandbox: Sandbox, *, mtimes: bool = True) -> dict[str, Node]:
        """The live system: the root and what lies outside it (not sources, not the state)."""
        live = {f"root/{n}": node for n, node in tree(sandbox.root, mtimes=mtimes).items()}
        live.update({f"outside/{n}": v for n, v in tree(sandbox.outside, mtimes=mtimes).items()})
        live.update({f"extra/{n}": v for n, v in self.live_extra(sandbox).items()})
        return live

    async def _converge(self, ctx: Context, spec: Spec, sandbox: Sandbox) -> None:
        """Observe, stage, withdraw the sources, apply: what a run does."""
        current = await self._observe(ctx, spec)
        if self.provider.stages:
            await self._stage(ctx, spec)
            assert await self._staged(ctx, spec), "staged() is false right after stage()"
        self.withdraw_sources(sandbox)
        await self._apply(ctx, spec, current)

    async def _refused(self, case: Case, ctx: Context, spec: Spec, sandbox: Sandbox) -> None:
        """``apply`` from a refusing start raises the declared error and changes nothing."""
        assert case.start.refuses is not None
        current = await self._observe(ctx, spec)
        assert not self._diff(spec, current).is_noop, "a refusing start must not be a no-op"
        if self.provider.stages:
            await self._stage(ctx, spec)
        self.withdraw_sources(sandbox)
        before = self._live(sandbox)
        with pytest.raises(case.start.refuses):
            await self._apply(ctx, spec, current)
        _assert_same(before, self._live(sandbox), "a refused apply changed things")

    async def _observe(self, ctx: Context, spec: Spec) -> Any:
        return await self._typed("observe", self.provider.observe(ctx, spec))

    def _diff(self, spec: Spec, current: Any) -> Change:
        try:
            return self.provider.diff(spec, current)
        except errors.AccordError:
            raise
        except Exception as exc:
            raise self._untyped("diff", exc) from exc

    async def _staged(self, ctx: Context, spec: Spec) -> bool:
        return await self._typed("staged", self.provider.staged(ctx, spec))

    async def _stage(self, ctx: Context, spec: Spec) -> None:
        await self._typed("stage", self.provider.stage(ctx, spec))

    async def _apply(self, ctx: Context, spec: Spec, current: Any) -> None:
        await self._typed("apply", self.provider.apply(ctx, spec, current))

    async def _snapshot(self, ctx: Context, spec: Spec, current: Any) -> Memo | None:
        return await self._typed("snapshot", self.provider.snapshot(ctx, spec, current))

    async def _delete(self, ctx: Context, spec: Spec, prior: Memo | None) -> str | None:
        return await self._typed("delete", self.provider.delete(ctx, spec, prior))

    async def _typed(self, phase: str, call: Awaitable[T]) -> T:
        """Await a phase; anything it raises must be an ``AccordError``."""
        try:
            return await call
        except errors.AccordError:
            raise
        except Exception as exc:
            raise self._untyped(phase, exc) from exc

    def _untyped(self, phase: str, exc: Exception) -> AssertionError:
        return AssertionError(
            f"{self.kind}.{phase} raised {type(exc).__name__}: {exc} — providers raise "
            "accord.errors.AccordError subclasses (translate foreign errors with raise … from)"
        )


def _sandbox_parent() -> str | None:
    """Where sandboxes go: ``$ACCORD_TEST_TMPDIR``, else a writable ``/dev/shm``, else TMPDIR."""
    chosen = os.environ.get("ACCORD_TEST_TMPDIR")
    if chosen:
        return chosen
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK):
        return "/dev/shm"
    return None


def _assert_removed_one_thing(
    start: Mapping[str, Node],
    applied: Mapping[str, Node],
    after: Mapping[str, Node],
    *,
    several: bool = False,
) -> None:
    """``delete(prior=None)`` only removes: one entry (with ``several``, one per thing it
    manages), and under each only what apply made."""
    kept = {name: node for name, node in applied.items() if name in after}
    _assert_same(kept, after, "delete(prior=None) changed what it did not remove")
    removed = sorted(applied.keys() - after.keys(), key=len)
    if not removed:
        return
    tops = [name for name in removed if not any(name.startswith(f"{t}/") for t in removed)]
    if not several:
        stray = [name for name in removed[1:] if not name.startswith(f"{removed[0]}/")]
        assert not stray, f"delete(prior=None) removed {removed[0]} and also {stray}"
    for top in tops:
        below = [name for name in removed if name.startswith(f"{top}/")]
        unmanaged = [name for name in below if start.get(name) == applied[name]]
        assert not unmanaged, f"delete(prior=None) removed {unmanaged}, which apply did not make"
        if start.get(top) == applied[top]:  # there before apply: a managed thing, not a container
            assert not below, (
                f"delete(prior=None) removed {top}, which apply did not make, with {below}"
            )


def _parents_made(start: Mapping[str, Node], applied: Mapping[str, Node]) -> set[str]:
    """Directories that apply created on the way to something else it created."""
    created = applied.keys() - start.keys()
    return {
        name
        for name in created
        if applied[name].type == "directory"
        and any(other.startswith(f"{name}/") for other in created)
    }
