"""Running apt and dpkg for the ``Package`` kind: the environment, queries, staged .deb files.

Every run gets ``os.environ`` plus what an unattended apt run needs: ``DEBIAN_FRONTEND=
noninteractive``, untranslated messages (``LC_ALL=C.UTF-8``, so errors can be classified) and the
sbin directories on ``PATH`` (dpkg needs ``ldconfig`` and ``start-stop-daemon``, which a service
manager's minimal ``PATH`` may lack). Nothing else is configured here: apt reads the machine's
own configuration — sources, pinning, proxies, ``/etc/apt/apt.conf.d`` — or the file named by
``APT_CONFIG``, apt's own switch for pointing it elsewhere (the tests use that).

Runs that take dpkg's lock (downloads, installs, removals) are serialized within the process,
so accord's own Package resources never fail on each other's lock; another program holding it
is a :class:`~accord.errors.TransientError`. Output (stdout and stderr together, at most 64 KiB:
head and tail) comes back for the journal and for error messages. A run that outlives its
timeout, or whose step is cancelled, is killed with its whole process group
(:mod:`~accord.providers.process`).
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from accord import errors
from accord.providers import process

OUTPUT_GRACE = 2.0  # seconds to drain output after exit (a daemon a script started may hold it)
LOCK_RETRY_AFTER = 10.0
SBIN = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
NOWHERE = "/nonexistent/accord"  # an archive directory that holds nothing: apt lists every .deb

STATUS = {
    "n": "not-installed",
    "c": "config-files",
    "H": "half-installed",
    "U": "unpacked",
    "F": "half-configured",
    "W": "triggers-awaited",
    "t": "triggers-pending",
    "i": "installed",
}
SELECTION = {"u": "unknown", "i": "install", "h": "hold", "r": "deinstall", "p": "purge"}
QUERY_FORMAT = "${Package}|${db:Status-Abbrev}|${Version}|${Architecture}\n"

LOCKED = re.compile(
    r"Could not get lock|Unable to acquire the dpkg|Unable to lock|lock was locked by another",
    re.IGNORECASE,
)
TELLING = (  # apt's and dpkg's lines that explain a failure (indented lines follow them)
    "E:",
    "dpkg: ",
    "Errors were encountered",
    "The following packages have unmet dependencies",
    "The following packages will be REMOVED",
)
HINTS = {
    "remove is disabled": "(accord never removes a package as a side effect of installing one: "
    "declare the packages listed as REMOVED absent, ordered before this one with depends_on)",
    "Held packages were changed": "(a package on hold would change: accord does not override "
    "apt-mark hold)",
    "dpkg was interrupted": "(an earlier dpkg run was interrupted: `dpkg --configure -a`)",
}
URI_LINE = re.compile(r"^'(?P<uri>[^']*)' (?P<file>\S+) (?P<size>\d+) ?(?P<hash>\S*)$")


@dataclass(frozen=True, slots=True)
class PackageState:
    """What dpkg says about an installed (or half-installed, or removed-with-config) package."""

    status: str  # a value of STATUS
    version: str  # "" when not-installed
    architecture: str = ""
    selection: str = "install"  # a value of SELECTION: "hold" is apt-mark hold
    reinstall_required: bool = False

    @property
    def installed(self) -> bool:
        """Its files are on the machine (fully configured or not): not just its config files."""
        return self.status not in ("not-installed", "config-files")

    @property
    def held(self) -> bool:
        return self.selection == "hold"


@dataclass(frozen=True, slots=True)
class Deb:
    """One .deb file that apt would fetch: ``apt-get --print-uris`` output."""

    uri: str
    filename: str  # as apt stores it in an archive directory: name_version_arch.deb, quoted
    size: int
    sha256: str | None  # None when the index has no SHA256 for it: the size is checked alone

    @property
    def package(self) -> str:
        return unquote(self.filename.split("_", 1)[0])

    @property
    def version(self) -> str:
        return unquote(self.filename.split("_")[1])

    @property
    def local_path(self) -> Path | None:
        """The file itself for a ``file:`` URI. apt uses those in place and never copies them
        into an archive directory, so staging has to."""
        parts = urlsplit(self.uri)
        return Path(unquote(parts.path)) if parts.scheme == "file" else None


@dataclass(frozen=True, slots=True)
class Finished:
    code: int
    output: str


def deb_filename(name: str, version: str, architecture: str) -> str:
    """The name apt gives a .deb in an archive directory (``:`` in an epoch becomes ``%3a``)."""
    return f"{_quote(name)}_{_quote(version)}_{_quote(architecture)}.deb"


def _quote(part: str) -> str:
    return "".join(f"%{ord(c):02x}" if c in "_:%" or not c.isprintable() else c for c in part)


# Running


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DEBIAN_FRONTEND="noninteractive",
        DEBCONF_NONINTERACTIVE_SEEN="true",
        APT_LISTCHANGES_FRONTEND="none",
        APT_LISTBUGS_FRONTEND="none",
        LC_ALL="C.UTF-8",
    )
    env.pop("LANGUAGE", None)
    path = [p for p in env.get("PATH", "").split(":") if p]
    env["PATH"] = ":".join(path + [p for p in SBIN if p not in path])
    return env


_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def exclusive() -> asyncio.Lock:
    """The process's lock around runs that take dpkg's lock (one per event loop)."""
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    return lock


async def run(argv: Sequence[str], *, what: str, limit: float | None = None) -> Finished:
    """Run ``argv`` (no shell, stdin closed) for at most ``limit`` seconds; its exit code and
    output. Only failing to start and timing out raise; a non-zero exit is the caller's to judge."""
    try:
        done = await process.run(
            argv, seconds=limit, env=environment(), merge=True, linger=OUTPUT_GRACE
        )
    except OSError as exc:
        raise errors.PermanentError(
            f"{what}: cannot run {argv[0]}: {exc.strerror or exc} (the Package kind needs apt "
            "and dpkg: a Debian-family system)"
        ) from exc
    if done.code is None:
        raise errors.PermanentError(
            f"{what}: `{shlex.join(argv)}` timed out after {limit:g} s and was killed; "
            "dpkg may be left half-done: the next apply finishes it (dpkg --configure -a)"
        )
    return Finished(code=done.code, output=done.stdout)


def failure(what: str, argv: Sequence[str], finished: Finished) -> errors.ProviderError:
    """A failed apt or dpkg run as a typed error: the lock is transient, the rest permanent."""
    summary = f"{what}: `{shlex.join(argv)}` exited {finished.code}"
    locked = LOCKED.search(finished.output)
    if locked:
        line = next((ln.strip() for ln in finished.output.splitlines() if LOCKED.search(ln)), "")
        return errors.TransientError(
            f"{summary}: dpkg's lock is held by another program ({line})",
            retry_after=LOCK_RETRY_AFTER,
        )
    hints = [hint for marker, hint in HINTS.items() if marker in finished.output]
    return errors.PermanentError("\n".join([f"{summary}:", explain(finished.output), *hints]))


def explain(output: str) -> str:
    """The lines of apt/dpkg output that say what went wrong, else its last lines."""
    lines = output.splitlines()
    keep: list[str] = []
    follow = False  # indented lines continue the message above them
    for line in lines:
        if line.startswith(TELLING):
            keep.append(line)
            follow = True
        elif follow and line.startswith(" "):
            keep.append(line)
        else:
            follow = False
    return "\n".join(keep or lines[-20:]).strip() or "(no output)"


async def run_locked(argv: Sequence[str], *, what: str, limit: float | None) -> Finished:
    """:func:`run`, one at a time in this process: for what takes dpkg's lock."""
    async with exclusive():
        return await run(argv, what=what, limit=limit)


async def run_changing(argv: Sequence[str], *, what: str, limit: float | None) -> Finished:
    """:func:`run_locked` for what changes dpkg's database (an install, a removal), then
    :func:`forget_caches`, whether it succeeded or not — still holding the lock, so that none
    of accord's own apt runs can start in between and trust the stale cache."""
    async with exclusive():
        try:
            return await run(argv, what=what, limit=limit)
        finally:
            await forget_caches(what=what)


async def update(*, what: str, limit: float | None) -> None:
    """``apt-get update``: refresh apt's lists (no installed package changes)."""
    argv = ["apt-get", "update", "-q", "-o", "APT::Update::Error-Mode=any"]
    finished = await run_locked(argv, what=what, limit=limit)
    failed = "W: Failed to fetch" in finished.output or "Some index files failed" in finished.output
    if finished.code != 0 or failed:  # older apt says a source failed only in a warning
        error = failure(what, argv, finished)
        raise errors.TransientError(
            f"{error} (refreshing apt's lists)", retry_after=retry_after(error)
        )


def locked(error: errors.ProviderError) -> bool:
    """Whether apt or dpkg failed only because another program holds a lock of theirs."""
    return isinstance(error, errors.TransientError) and LOCKED.search(str(error)) is not None


def retry_after(error: errors.ProviderError) -> float | None:
    return error.retry_after if isinstance(error, errors.TransientError) else None


# Queries (no lock: dpkg-query and apt-get --print-uris only read)


async def query(names: Iterable[str], *, what: str) -> dict[str, PackageState]:
    """dpkg's state of each named package that is not plain not-installed, by bare name.

    Where a name matches several architectures (multi-arch), an installed one is preferred.
    """
    names = list(names)
    if not names:
        return {}
    argv = ["dpkg-query", "-W", "-f", QUERY_FORMAT, "--", *names]
    finished = await run(argv, what=what)
    if finished.code not in (0, 1):  # 1: some name is unknown to dpkg, which means absent
        raise failure(what, argv, finished)
    found: dict[str, PackageState] = {}
    for line in finished.output.splitlines():
        fields = line.split("|")
        if len(fields) != 4 or len(fields[1]) < 2:
            continue  # "dpkg-query: no packages found matching …" and the like
        package, abbrev, version, architecture = fields
        status = STATUS.get(abbrev[1], "not-installed")
        if status == "not-installed":
            continue
        state = PackageState(
            status=status,
            version=version,
            architecture=architecture,
            selection=SELECTION.get(abbrev[0], "unknown"),
            reinstall_required=abbrev[2:3] == "R",
        )
        known = found.get(package)
        if known is None or (state.installed and not known.installed):
            found[package] = state
    return found


async def print_uris(options: Sequence[str], targets: Sequence[str], *, what: str) -> list[Deb]:
    """Every .deb that ``apt-get install [options] targets`` would fetch, from apt's lists.

    The archive directory is pointed at nothing, so files accord already staged are listed
    too, each with the size and SHA256 that the repository's index gives.
    """
    argv = [
        "apt-get", "install", "--print-uris", "-q", "-y", *options,  # -q: explanations stay
        "-o", f"Dir::Cache::archives={NOWHERE}", "-o", "Acquire::ForceHash=SHA256",
        *targets,
    ]  # fmt: skip
    finished = await run(argv, what=what)
    if finished.code != 0:
        raise failure(what, argv, finished)
    return parse_uris(finished.output)


def parse_uris(output: str) -> list[Deb]:
    """The ``'uri' filename size hash`` lines of ``apt-get --print-uris`` output."""
    debs = []
    for line in output.splitlines():
        match = URI_LINE.match(line)
        if match:
            kind, _, digest = match["hash"].partition(":")
            debs.append(
                Deb(
                    uri=match["uri"],
                    filename=match["file"],
                    size=int(match["size"]),
                    sha256=digest.lower() if kind.upper() == "SHA256" and digest else None,
                )
            )
    return debs


def unknown(error: errors.ProviderError) -> bool:
    """Whether apt failed because its lists do not know the package or version."""
    text = str(error)
    return any(
        marker in text
        for marker in (
            "Unable to locate package",
            "was not found",
            "has no installation candidate",
            "Couldn't find any package",
        )
    )


async def archives_of_apt(*, what: str) -> Path | None:
    """apt's own archive directory (``Dir::Cache::archives``), where it keeps what it fetched."""
    argv = ["apt-config", "shell", "ARCHIVES", "Dir::Cache::archives/d"]
    finished = await run(argv, what=what)
    if finished.code != 0:
        return None
    for word in shlex.split(finished.output):
        if word.startswith("ARCHIVES="):
            return Path(word.removeprefix("ARCHIVES="))
    return None


async def forget_caches(*, what: str) -> None:
    """Delete apt's binary caches (``pkgcache.bin``, ``srcpkgcache.bin``) after dpkg's database
    changed; apt rebuilds them on its next run.

    apt trusts its cache while dpkg's status file keeps its size and its mtime in whole
    seconds. A change that leaves the size as it was (an upgrade to a version string of the
    same length; a revert) within the second the cache was built goes unnoticed, and apt goes
    on believing the old versions installed — until the next change, which may be never: a
    later rollback to that version would then be "already the newest version" and do nothing.
    Tiny packages installed one after another in a run are exactly that fast.
    """
    argv = [
        "apt-config",
        "shell",
        "PKG",
        "Dir::Cache::pkgcache/f",
        "SRC",
        "Dir::Cache::srcpkgcache/f",
    ]
    finished = await run(argv, what=what)
    for word in shlex.split(finished.output) if finished.code == 0 else []:
        name, _, value = word.partition("=")
        path = Path(value)
        if name in ("PKG", "SRC") and value and path.is_file():  # "" when caching is off
            path.unlink(missing_ok=True)
