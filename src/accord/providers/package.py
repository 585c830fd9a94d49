"""``Package``: a Debian package (apt and dpkg), installed at a pinned or any version, or absent.

User docs: ``docs/kinds/package.md``. The modules beside this one: :mod:`.apt` runs apt and
dpkg, :mod:`.debstage` keeps the staged .debs, :mod:`.debversion` orders Debian versions.

**observe** asks ``dpkg-query``. It never returns ``None``: a name dpkg does not know is
observed as ``not-installed`` (one of dpkg's own statuses), because ``absent`` is a state a
resource may declare and then reach, not the resource's non-existence. Only configuration files
left (``config-files``) is not installed either. **diff** is pure: versions compare as dpkg
compares them, so ``1.0`` equals ``0:1.0`` and a plan can say "upgrade" or "downgrade";
``version: any`` is satisfied by whatever is installed.

**stage** asks apt what installing ``name[=version]`` would fetch right now (``apt-get install
--print-uris`` against an empty archive directory: the complete set, each file with the size
and SHA256 of the repository's index) and puts every file into accord's own apt archive
directory, verified, recording what it staged (:mod:`.debstage`). If apt does not know the
package or version, or a download fails, it refreshes apt's lists once (``apt-get update``
changes no installed package) and tries again. It also keeps the .deb of each version that
apply replaces or removes, so that reverting in the maintenance window needs no network
either — best effort: one that apt cannot get (offline; a version no mirror has any more) does
not fail stage, which notes it (``ctx.output``, and a record that apply repeats in its output
and delete quotes). ``staged()`` covers those kept, not those stage tried and could not get.

**apply** refuses unless what it is to install is all staged and intact: what apt resolves now
if it is, else what stage recorded (apt's lists may have moved on since staging, or a ``file:``
repository be gone). Then ``apt-get install --no-download`` from the archive directory — apt's
own resolution, ordering and auto-marking (given the recorded files by path, apt marks them all
manual, so the dependencies are marked auto again). ``--no-remove``: installing never removes
another package as a side effect; such a conflict fails naming the packages, to be declared
absent. ``--force-confdef --force-confold``: local changes to conffiles are kept. A pinned
version may be a downgrade (``--allow-downgrades``). A package on hold is refused, not
overridden. If dpkg was interrupted, apply runs ``dpkg --configure -a`` first, as an admin
would. ``absent`` removes with ``dpkg --remove`` (``--purge`` with ``purge: true``) rather than
``apt-get remove``, which would also remove every package that depends on it: dpkg refuses and
names them. After anything that changes dpkg's database, apt's binary caches are deleted
(:func:`.apt.forget_caches`: apt would not notice every change).

**snapshot** records the prior state of the package and of every package its install would add
or change (a version, only config files, or absent). **delete** with that snapshot puts them
all back: older versions from the staged .debs (or apt's cache) with ``dpkg -i``, packages that
were absent purged (a dependency something else needs by then is kept, and the note says so).
When a prior version's .deb is in neither cache, delete restores what it can and raises a
:class:`~accord.errors.PermanentError` naming what it could not, and why stage could not keep
it. Without a snapshot, delete purges the package (an ``absent`` resource owns nothing to
delete).

Failures are typed: dpkg's lock held by another program is a ``TransientError``; unknown
packages or versions, unmet dependencies, conflicts, holds, failing maintainer scripts and
timeouts are ``PermanentError`` with apt's or dpkg's own lines quoted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from accord import errors
from accord.model.plan import Action, Change, FieldChange
from accord.model.specs import PackageSpec, Spec
from accord.providers import apt, debstage, debversion
from accord.providers.apt import Deb, PackageState
from accord.providers.base import Context, Memo, Provider

ANY = "any"
CONFFILE_OPTIONS = ("--force-confdef", "--force-confold")  # keep local changes to conffiles
DPKG_OPTIONS = [
    *(part for o in CONFFILE_OPTIONS for part in ("-o", f"Dpkg::Options::={o}")),
    # No pseudo-terminal for dpkg: apt would start dpkg in a session of its own, out of reach
    # of the timeout, which kills the process group.
    "-o", "Dpkg::Use-Pty=0",
]  # fmt: skip
INTERRUPTED = "dpkg was interrupted"
KEPT = re.compile(r"dependency problems prevent removal of (\S+?):")
NOT_INSTALLED = PackageState(status="not-installed", version="")


class PackageProvider(Provider[PackageSpec, PackageState]):
    kind: ClassVar[str] = "Package"
    spec_model: ClassVar[type[Spec]] = PackageSpec
    stages: ClassVar[bool] = True

    async def observe(self, ctx: Context, spec: PackageSpec) -> PackageState | None:
        found = await apt.query([spec.name], what=_what(ctx, spec))
        return next(iter(found.values()), NOT_INSTALLED)

    def diff(self, spec: PackageSpec, current: PackageState | None) -> Change:
        name, current = spec.name, _known(current)
        if spec.state == "absent":
            return _diff_absent(spec, current)
        wanted = "any version" if spec.version == ANY else spec.version
        if current is None:
            return Change(action=Action.CREATE, reason=f"{name} is not installed; wanted {wanted}")
        if not current.installed:
            return Change(
                action=Action.CREATE,
                reason=f"{name} is not installed (its configuration files remain); wanted {wanted}"
                + _hold_note(current),
            )
        fields, reasons = [], []
        status = "reinst-required" if current.reinstall_required else current.status
        if status != "installed":
            fields.append(FieldChange(field="status", current=status, desired="installed"))
            reasons.append(f"{name} {current.version} is {status} (an interrupted install?)")
        if spec.version != ANY:
            order = debversion.compare(current.version, spec.version)
            if order:
                fields.append(
                    FieldChange(field="version", current=current.version, desired=spec.version)
                )
                which = "an upgrade" if order < 0 else "a downgrade"
                reasons.append(f"{name} {current.version} is installed; wanted {wanted} ({which})")
        if fields:
            return Change(
                action=Action.UPDATE,
                reason="; ".join(reasons) + _hold_note(current),
                fields=tuple(fields),
            )
        pinned = ", as pinned" if spec.version != ANY else " (any version will do)"
        return Change.noop(f"{name} {current.version} is installed{pinned}")

    def details(self, spec: PackageSpec, current: PackageState | None) -> dict[str, Any]:
        """The installed version (``None`` when not installed), and dpkg's status if unusual."""
        current = _known(current)
        if current is None or not current.installed:
            return {"version": None} | ({"status": current.status} if current else {})
        facts: dict[str, Any] = {"version": current.version, "architecture": current.architecture}
        if current.status != "installed":
            facts["status"] = current.status
        if current.held:
            facts["held"] = True
        return facts

    # stage

    async def staged(self, ctx: Context, spec: PackageSpec) -> bool:
        try:
            current = await self.observe(ctx, spec)
            install = await self._install_set(ctx, spec, current, memo=True)
            priors = await self._priors(ctx, spec, current, install.debs)
        except errors.ProviderError:
            return False  # stage will find the same problem and report it
        if not install.staged:
            return False
        # Priors are kept best effort: one apt cannot get, or stage tried and could not, is
        # not waited for (delete says so when it would be needed).
        unkept = {(u.package, u.version) for u in debstage.read_unkept(ctx, _target(spec))}
        wanted = [p.deb for p in priors if p.deb and (p.package, p.version) not in unkept]
        return not await debstage.missing(debstage.archives(ctx), wanted, memo=True)

    async def stage(self, ctx: Context, spec: PackageSpec) -> None:
        what, target = _what(ctx, spec), _target(spec)
        current = await self.observe(ctx, spec)
        try:
            install = await self._install_set(ctx, spec, current)
        except errors.ProviderError:
            install = Install([], staged=False)  # fetch refreshes apt's lists, or says why not
        if not install.staged:
            debs = await debstage.fetch(
                ctx, _options(spec), [target], what=what, limit=spec.timeout
            )
            install = Install(debs, staged=True)
        if install.debs and not install.recorded:
            debstage.write_record(ctx, target, install.debs)
        unkept = [
            debstage.Unkept(prior.package, prior.version, reason)
            for prior in await self._priors(ctx, spec, current, install.debs)
            if (reason := await debstage.keep(ctx, prior, what=what, limit=spec.timeout))
        ]
        debstage.write_unkept(ctx, target, unkept)
        if ctx.output is not None:
            for u in unkept:
                ctx.output(f"could not keep the .deb of {u.package} {u.version} for a revert: "
                           f"{u.reason}")  # fmt: skip

    async def _install_set(
        self, ctx: Context, spec: PackageSpec, current: PackageState | None, *, memo: bool = False
    ) -> Install:
        """Every .deb that apply would install: what apt resolves now if all of it is staged,
        else what stage recorded if all of that is (apt's lists moved on since staging, or a
        ``file:`` repository is gone), else what apt resolves now, not (all) staged. ``memo``:
        trust digests of unchanged files (:func:`.debstage.missing`), for plans."""
        if spec.state == "absent" or self.diff(spec, current).is_noop:
            return Install([], staged=True)
        directory = debstage.archives(ctx)
        try:
            live = await apt.print_uris(_options(spec), [_target(spec)], what=_what(ctx, spec))
        except errors.ProviderError as exc:
            if not apt.unknown(exc):
                raise
            unknown: errors.ProviderError | None = exc
            live = []
        else:
            unknown = None
            if not await debstage.missing(directory, live, memo=memo):
                return Install(live, staged=True)
        recorded = debstage.read_record(ctx, _target(spec))
        if recorded and not await debstage.missing(directory, recorded, memo=memo):
            return Install(recorded, staged=True, recorded=True)
        if unknown is not None:
            raise unknown
        return Install(live, staged=False)

    async def _priors(
        self, ctx: Context, spec: PackageSpec, current: PackageState | None, install: list[Deb]
    ) -> list[debstage.Prior]:
        """The versions that apply replaces or removes (installed, or whose config files
        remain), each with its .deb where apt can still get it: delete needs them to put things
        back. A version gone from every source cannot be staged; delete says so then."""
        what = _what(ctx, spec)
        replaced: dict[str, PackageState] = {}
        if self.diff(spec, current).is_noop:
            pass
        elif spec.state == "absent":
            if (known := _known(current)) is not None:
                replaced[_bare(spec.name)] = known
        else:
            states = await apt.query({deb.package for deb in install}, what=what)
            for deb in install:
                state = states.get(deb.package)  # installed, or only its config files left
                if state is not None and not debversion.equal(state.version, deb.version):
                    replaced[deb.package] = state
        priors: list[debstage.Prior] = []
        for name, state in replaced.items():
            prior = debstage.Prior(name, state.version, state.architecture)
            try:
                found = await apt.print_uris(["--reinstall"], [prior.target], what=what)
            except errors.ProviderError as exc:
                priors.append(replace(prior, problem=str(exc).removeprefix(f"{what}: ")))
                continue
            own = next((d for d in found if d.package == name), None)
            priors.append(replace(prior, deb=own, problem="" if own else debstage.CANNOT_DOWNLOAD))
        return priors

    # apply

    async def apply(self, ctx: Context, spec: PackageSpec, current: PackageState | None) -> None:
        if self.diff(spec, current).is_noop:
            return
        what = _what(ctx, spec)
        if current is not None and current.held:
            raise errors.PermanentError(
                f"{what}: {spec.name} is held (apt-mark hold); accord does not override a hold: "
                f"`apt-mark unhold {_bare(spec.name)}` to let it change"
            )
        await self._note_unkept(ctx, spec)
        if spec.state == "absent":
            await self._dpkg_remove(ctx, spec, "--purge" if spec.purge else "--remove", [spec.name])
            return
        directory = debstage.archives(ctx)
        install = await self._install_set(ctx, spec, current)
        if not install.staged:
            missing = [d.filename for d in await debstage.missing(directory, install.debs)]
            raise errors.PermanentError(
                f"{what}: not staged in {directory}: {', '.join(missing)} (stage first; if it "
                "was staged, apt's lists changed since and it resolves differently now)"
            )
        targets, before = [_target(spec)], {}
        if install.recorded:  # apt does not resolve it to staged files now: install those
            targets = [str(directory / deb.filename) for deb in install.debs]
            before = await apt.query({deb.package for deb in install.debs}, what=what)
        (directory / "partial").mkdir(parents=True, exist_ok=True)  # apt insists on it
        argv = [
            "apt-get", "install", "-y", "-q", "--no-download", *_options(spec),
            "-o", f"Dir::Cache::archives={directory}", *DPKG_OPTIONS, *targets,
        ]  # fmt: skip
        finished = await apt.run_changing(argv, what=what, limit=spec.timeout)
        if finished.code != 0 and INTERRUPTED in finished.output:
            await self._configure_pending(ctx, spec)
            finished = await apt.run_changing(argv, what=what, limit=spec.timeout)
        if ctx.output is not None:
            ctx.output(finished.output)
        if finished.code != 0:
            raise apt.failure(what, argv, finished)
        if install.recorded:  # apt marked every file given as manually installed
            pulled = {deb.package for deb in install.debs} - {_bare(spec.name)} - before.keys()
            await self._mark_auto(ctx, spec, sorted(pulled))
        debstage.record_path(ctx, _target(spec)).unlink(missing_ok=True)  # stage afresh next time

    async def _note_unkept(self, ctx: Context, spec: PackageSpec) -> None:
        """Say in apply's output which versions it is about to replace that a revert could not
        put back: stage could not keep their .debs."""
        unkept = debstage.read_unkept(ctx, _target(spec))
        if ctx.output is None or not unkept:
            return
        now = await apt.query({u.package for u in unkept}, what=_what(ctx, spec))
        for u in unkept:
            state = now.get(u.package)
            if state is not None and debversion.equal(state.version, u.version):
                ctx.output(f"note: a revert cannot put back {u.package} {u.version}: staging "
                           f"could not keep its .deb: {u.reason}")  # fmt: skip

    async def _mark_auto(self, ctx: Context, spec: PackageSpec, names: list[str]) -> None:
        """Mark dependencies as automatically installed, as apt would have (for autoremove)."""
        if not names:
            return
        argv = ["apt-mark", "auto", *names]
        finished = await apt.run_locked(argv, what=_what(ctx, spec), limit=spec.timeout)
        if ctx.output is not None:  # cosmetic: a failure here does not undo the install
            ctx.output(finished.output)

    async def _configure_pending(self, ctx: Context, spec: PackageSpec) -> None:
        """Finish what an interrupted dpkg run left half-done, as apt asks an admin to."""
        what = _what(ctx, spec)
        argv = ["dpkg", *CONFFILE_OPTIONS, "--configure", "-a"]
        finished = await apt.run_changing(argv, what=what, limit=spec.timeout)
        if finished.code != 0:
            raise apt.failure(what, argv, finished)

    async def _dpkg_remove(
        self, ctx: Context, spec: PackageSpec, action: str, names: list[str], *, strict: bool = True
    ) -> list[str]:
        """``dpkg --remove`` or ``--purge`` the names; returns those dpkg kept because another
        installed package depends on them. Keeping the resource's own package is an error
        when ``strict``."""
        what = _what(ctx, spec)
        argv = ["dpkg", action, *names]
        finished = await apt.run_changing(argv, what=what, limit=spec.timeout)
        if ctx.output is not None:
            ctx.output(finished.output)
        if finished.code == 0:
            return []
        kept = KEPT.findall(finished.output)
        error = apt.failure(what, argv, finished)
        if isinstance(error, errors.TransientError) or not kept:
            raise error
        if strict and _bare(spec.name) in kept:
            raise error
        return kept

    # snapshot and delete

    async def snapshot(
        self, ctx: Context, spec: PackageSpec, current: PackageState | None
    ) -> Memo | None:
        """The prior state of the package and of each package its install would add or change."""
        states: dict[str, PackageState | None] = {_bare(spec.name): _known(current)}
        try:
            install = (await self._install_set(ctx, spec, current, memo=True)).debs
        except errors.ProviderError:
            install = []  # apt cannot resolve it now; apply will fail and say why
        others = {deb.package for deb in install} - states.keys()
        found = await apt.query(sorted(others), what=_what(ctx, spec))
        states.update({name: found.get(name) for name in sorted(others)})
        return {"packages": [_prior(name, state) for name, state in states.items()]}

    async def delete(self, ctx: Context, spec: PackageSpec, prior: Memo | None) -> str:
        name = _bare(spec.name)
        if prior is None:
            if spec.state == "absent":
                return f"nothing to remove: {name} was declared absent"
            current = _known(await self.observe(ctx, spec))
            if current is None:
                return f"{name} is not installed"
            await self._dpkg_remove(ctx, spec, "--purge", [spec.name])
            return f"purged {name} {current.version}"
        return await self._restore(ctx, spec, prior["packages"])

    async def _restore(self, ctx: Context, spec: PackageSpec, entries: list[dict[str, Any]]) -> str:
        """Put each package back as the snapshot found it: absent, only its config files left
        (of that version), or installed at that version.

        Removals go first, then versions are installed from cached .debs, then come the
        removals that had to wait: what dpkg kept the first time (a new dependency can go only
        once the package needing it is downgraded) and packages that get their config-files
        state back by installing that version and removing it again.
        """
        what = _what(ctx, spec)
        now = await apt.query([e["name"] for e in entries], what=what)
        todo = [e for e in entries if not _matches(e, now.get(e["name"]))]
        purge = [e["name"] for e in todo if e["status"] is None]
        remove = [e["name"] for e in todo if _removal_restores(e, now.get(e["name"]))]
        kept: dict[str, list[str]] = {"--purge": [], "--remove": []} | {
            action: await self._dpkg_remove(ctx, spec, action, names, strict=False)
            for action, names in (("--purge", purge), ("--remove", remove))
            if names
        }
        done: list[str] = []
        lost: list[str] = []
        found: list[Path] = []
        target = _target(spec)  # what stage could not keep for it, and why
        unkept = {(u.package, u.version): u.reason for u in debstage.read_unkept(ctx, target)}
        for entry in todo:
            if entry["status"] is None or entry["name"] in remove:
                continue
            name, version = entry["name"], entry["version"]
            deb = await debstage.cached(ctx, name, version, entry["architecture"] or "", what=what)
            if deb is None:
                state = now.get(name)
                at = "absent" if state is None else f"{state.status} {state.version}"
                why = unkept.get((name, version))
                lost.append(
                    f"{name} {entry['status']} {version} (it is {at}): "
                    + (
                        f"staging could not keep it: {why}"
                        if why
                        else "no stage kept it, or its .deb was deleted since"
                    )
                )
                continue
            found.append(deb)
            if entry["status"] == "config-files":
                kept["--remove"].append(entry["name"])
                done.append(f"{entry['name']} back to {entry['version']}'s config files")
            else:
                done.append(f"put back {entry['name']} {entry['version']}")
        if found:
            argv = ["dpkg", *CONFFILE_OPTIONS, "--install", *map(str, found)]
            finished = await apt.run_changing(argv, what=what, limit=spec.timeout)
            if ctx.output is not None:
                ctx.output(finished.output)
            if finished.code != 0:
                raise apt.failure(what, argv, finished)
        for action, names, verb in (("--purge", purge, "purged"), ("--remove", remove, "removed")):
            again = kept[action]
            still = await self._dpkg_remove(ctx, spec, action, again) if again else []
            if gone := [n for n in names if n not in still]:
                done.append(f"{verb} {', '.join(gone)}")
            if still:
                done.append(f"kept {', '.join(still)}: other packages need it now")
        if lost:
            raise errors.PermanentError(
                f"{what}: no .deb of the version in accord's cache ({debstage.archives(ctx)}) or "
                f"apt's: cannot put back {'; '.join(lost)}"
                + (f"\ndid: {'; '.join(done)}" if done else "")
            )
        return "; ".join(done) or "already as before"


@dataclass(frozen=True, slots=True)
class Install:
    """What apply would install, and whether all of it is in the archive directory, intact."""

    debs: list[Deb]
    staged: bool
    recorded: bool = False  # stage's record, used when apt's resolution now is not staged


def _prior(name: str, state: PackageState | None) -> dict[str, Any]:
    """A snapshot entry: ``status`` is "installed", "config-files" or None (absent)."""
    if state is None:
        return {"name": name, "status": None, "version": None, "architecture": None}
    return {
        "name": name,
        "status": "installed" if state.installed else "config-files",
        "version": state.version,
        "architecture": state.architecture,
    }


def _matches(entry: dict[str, Any], state: PackageState | None) -> bool:
    """Whether a package is as its snapshot entry recorded it."""
    if entry["status"] is None or state is None:
        return entry["status"] is None and state is None
    if not debversion.equal(state.version, entry["version"]):
        return False
    if entry["status"] == "config-files":
        return not state.installed
    return state.status == "installed"


def _removal_restores(entry: dict[str, Any], state: PackageState | None) -> bool:
    """A config-files entry whose version is installed now: removing it is all it takes."""
    return (
        entry["status"] == "config-files"
        and state is not None
        and state.installed
        and debversion.equal(state.version, entry["version"])
    )


def _diff_absent(spec: PackageSpec, current: PackageState | None) -> Change:
    name = spec.name
    if current is None:
        return Change.noop(f"{name} is not installed")
    if not current.installed:
        if not spec.purge:
            return Change.noop(
                f"{name} is not installed (its configuration files remain; purge: true would "
                "remove them)"
            )
        return Change(
            action=Action.DELETE,
            reason=f"{name}'s configuration files remain; wanted purged" + _hold_note(current),
            fields=(FieldChange(field="status", current=current.status, desired="purged"),),
        )
    goal = "purged" if spec.purge else "absent"
    return Change(
        action=Action.DELETE,
        reason=f"{name} {current.version} is installed; wanted {goal}" + _hold_note(current),
        fields=(FieldChange(field="status", current=current.status, desired=goal),),
    )


def _known(state: PackageState | None) -> PackageState | None:
    """``None`` for a package dpkg has no files or config files of."""
    return None if state is None or state.status == "not-installed" else state


def _hold_note(current: PackageState) -> str:
    return "; it is held (apt-mark hold), so apply will refuse" if current.held else ""


def _options(spec: PackageSpec) -> list[str]:
    """apt-get install options, the same for resolving, downloading and installing."""
    return ["--no-remove"] + (["--allow-downgrades"] if spec.version != ANY else [])


def _target(spec: PackageSpec) -> str:
    return spec.name if spec.version == ANY else f"{spec.name}={spec.version}"


def _bare(name: str) -> str:
    return name.partition(":")[0]


def _what(ctx: Context, spec: PackageSpec) -> str:
    return f"resource {ctx.resource_id!r} (Package {spec.name})"
