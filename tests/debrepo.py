"""Tiny Debian packages in a local apt repository, for the Package kind's real tests.

* ``.deb`` files are built with ``dpkg-deb`` (part of dpkg, so present wherever the tests can
  run); the repository's ``Packages`` index is written here in Python, so ``dpkg-dev``
  (``dpkg-scanpackages``) is not needed.
* The repository is served over HTTP from 127.0.0.1 (a switch makes it unreachable and a log
  shows what was asked for) and can be named as a ``file:`` source too.
* apt is pointed at it through ``APT_CONFIG`` with its own sources, lists, caches, preferences
  and logs in a temporary directory: the machine's apt configuration is neither read nor
  changed. Only dpkg's database is the machine's — the packages really get installed.
* Names start with ``accord-test-p<pid>-``; everything with this run's prefix is purged at the
  end, and leftovers of runs whose process is gone are purged at the start.

The tests install packages for real, so they need root, dpkg and apt: :data:`SKIP_REASON` says
why they cannot run when they cannot.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PREFIX = f"accord-test-p{os.getpid()}-"
STALE = re.compile(r"^accord-test-p(\d+)-")


def _skip_reason() -> str | None:
    tools = ("dpkg", "dpkg-deb", "dpkg-query", "apt-get", "apt-config", "apt-mark")
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        return f"Package tests need dpkg and apt (Debian family); missing: {', '.join(missing)}"
    if os.geteuid() != 0:
        return "Package tests install real packages and need root (CI runs them as root)"
    return None


SKIP_REASON = _skip_reason()


@dataclass(frozen=True)
class Pkg:
    """One test package: empty but for an optional conffile ``/etc/<name>.conf``."""

    short: str  # the name after the prefix
    version: str
    depends: str = ""  # a Depends field, with short names in {braces}: "{lib} (>= 1.0)"
    conflicts: str = ""  # a Conflicts field, the same way
    conffile: bool = False
    postinst: str = ""  # a shell script body run at configure (``set -e``)

    @property
    def name(self) -> str:
        return PREFIX + self.short

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version.replace(':', '%3a')}_all.deb"

    @property
    def conffile_path(self) -> Path:
        return Path("/etc") / f"{self.name}.conf"


@dataclass
class Repo:
    """A flat apt repository in ``directory``; serve it with :func:`serving`."""

    base: Path
    packages: list[Pkg] = field(default_factory=list)
    reachable: bool = True  # False: the HTTP server drops every connection unanswered
    requests: list[str] = field(default_factory=list)  # paths asked for over HTTP
    url: str = ""

    @property
    def directory(self) -> Path:
        return self.base / "repo"

    @property
    def apt_config(self) -> Path:
        """The configuration :meth:`configure_apt` writes by default."""
        return self.base / "apt" / "apt.conf"

    def deb(self, pkg: Pkg) -> Path:
        return self.directory / pkg.filename

    def add(self, *pkgs: Pkg) -> None:
        """Build each package into the repository and rewrite its index."""
        for pkg in pkgs:
            _build(pkg, self.deb(pkg), self.base / "build")
            self.packages.append(pkg)
        self._index()

    def withdraw(self, pkg: Pkg) -> None:
        """Drop ``pkg`` from the index (its file stays), as a mirror drops a superseded version."""
        self.packages.remove(pkg)
        self._index()

    def republish(self, pkg: Pkg) -> None:
        self.packages.append(pkg)
        self._index()

    def _index(self) -> None:
        stanzas = []
        for pkg in self.packages:
            data = self.deb(pkg).read_bytes()
            fields = {
                "Package": pkg.name,
                "Version": pkg.version,
                "Architecture": "all",
                "Maintainer": "accord tests <tests@accord.invalid>",
                "Depends": _named(pkg.depends),
                "Conflicts": _named(pkg.conflicts),
                "Filename": pkg.filename,
                "Size": str(len(data)),
                "SHA256": hashlib.sha256(data).hexdigest(),
                "Description": "accord test package",
            }
            stanzas.append("".join(f"{k}: {v}\n" for k, v in fields.items() if v))
        (self.directory / "Packages").write_text("\n".join(stanzas))

    def configure_apt(self, source: str, *, name: str = "apt") -> Path:
        """Write an apt configuration that reads only ``source`` (a sources.list line), in its
        own directory ``name``; return the file to name in ``APT_CONFIG``."""
        apt = self.base / name
        for sub in ("empty", "lists/partial", "state", "cache/archives/partial", "log"):
            (apt / sub).mkdir(parents=True, exist_ok=True)
        (apt / "empty.conf").write_text("")
        (apt / "sources.list").write_text(source + "\n")
        settings = {
            "Dir::Etc::SourceList": apt / "sources.list",
            "Dir::Etc::SourceParts": apt / "empty",
            "Dir::Etc::Parts": apt / "empty",
            "Dir::Etc::main": apt / "empty.conf",
            "Dir::Etc::Preferences": apt / "empty.conf",
            "Dir::Etc::PreferencesParts": apt / "empty",
            "Dir::State": apt / "state",
            "Dir::State::Lists": apt / "lists",
            "Dir::State::status": "/var/lib/dpkg/status",  # the machine's: installs are real
            "Dir::Cache": apt / "cache",  # with pkgcache.bin: see dpkg() for why that matters
            "Dir::Log": apt / "log",
            "Acquire::Retries": 0,
            "Acquire::Languages": "none",
            "Acquire::http::Proxy::127.0.0.1": "DIRECT",
        }
        config = apt / "apt.conf"
        config.write_text("".join(f'{k} "{v}";\n' for k, v in settings.items()))
        return config

    def http_source(self) -> str:
        return f"deb [trusted=yes] {self.url} ./"

    def file_source(self) -> str:
        return f"deb [trusted=yes] file:{self.directory} ./"

    def update(self, config: Path | None = None) -> None:
        """``apt-get update`` with ``config`` (default :attr:`apt_config`)."""
        run(["apt-get", "update", "-q"], env={"APT_CONFIG": str(config or self.apt_config)})


def _named(depends: str) -> str:
    return depends.replace("{", PREFIX).replace("}", "")


def _build(pkg: Pkg, target: Path, scratch: Path) -> None:
    tree = scratch / f"{pkg.short}-{pkg.version}"
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "DEBIAN").mkdir(parents=True)
    control = {
        "Package": pkg.name,
        "Version": pkg.version,
        "Architecture": "all",
        "Maintainer": "accord tests <tests@accord.invalid>",
        "Depends": _named(pkg.depends),
        "Conflicts": _named(pkg.conflicts),
        "Description": "accord test package",
    }
    (tree / "DEBIAN" / "control").write_text(
        "".join(f"{k}: {v}\n" for k, v in control.items() if v)
    )
    if pkg.conffile:
        conf = tree / pkg.conffile_path.relative_to("/")
        conf.parent.mkdir(parents=True)
        conf.write_text(f"version = {pkg.version}\n")
        (tree / "DEBIAN" / "conffiles").write_text(f"{pkg.conffile_path}\n")
    if pkg.postinst:
        script = tree / "DEBIAN" / "postinst"
        script.write_text(f"#!/bin/sh\nset -e\n{pkg.postinst}\n")
        script.chmod(0o755)
    target.parent.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(tree), str(target)])


@contextmanager
def serving(base: Path) -> Iterator[Repo]:
    """A repository under ``base``, served over HTTP on 127.0.0.1 while the context lasts."""
    repo = Repo(base)
    repo.directory.mkdir(parents=True, exist_ok=True)

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(repo.directory), **kwargs)

        def handle_one_request(self) -> None:
            if repo.reachable:
                super().handle_one_request()
                return
            self.raw_requestline = self.rfile.readline(65537)
            repo.requests.append(f"refused {self.raw_requestline.decode(errors='replace')}")
            self.close_connection = True  # hang up unanswered: the network is "gone"

        def send_head(self) -> Any:
            repo.requests.append(self.path)
            # Always the whole file: "not modified since" has a resolution of seconds, and an
            # index rewritten within the second it was fetched would look unchanged.
            del self.headers["If-Modified-Since"]
            return super().send_head()

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: tests read ``repo.requests``."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    host, port = server.server_address[:2]
    repo.url = f"http://{host!s}:{port}"
    try:
        yield repo
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# dpkg state on the machine


def run(argv: list[str], *, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"{argv} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout


def states(prefix: str = PREFIX) -> dict[str, str]:
    """``{name: "<status abbrev> <version>"}`` of every package dpkg knows with the prefix."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}|${db:Status-Abbrev}|${Version}\n", f"{prefix}*"],
        capture_output=True,
        text=True,
        check=False,
    )
    found = {}
    for line in result.stdout.splitlines():
        name, abbrev, version = line.split("|")
        if abbrev[1:2] != "n":  # "un"/"pn": dpkg remembers the name, nothing is installed
            found[name] = f"{abbrev.strip()} {version}".strip()
    return found


def dpkg(*args: str) -> None:
    """Run dpkg directly, then delete apt's binary caches, as the provider does: apt trusts them
    while dpkg's status file keeps its size and mtime (in seconds), which a quick install after
    a purge can restore, and apt then believes the purged versions still installed."""
    run(["dpkg", *args])
    paths = run(
        ["apt-config", "shell", "A", "Dir::Cache::pkgcache/f", "B", "Dir::Cache::srcpkgcache/f"]
    )
    for word in paths.split():
        value = word.partition("=")[2].strip("'")
        if value and Path(value).is_file():
            Path(value).unlink()


def install(repo: Repo, *pkgs: Pkg) -> None:
    """Install with dpkg directly (arranging a starting state, apt not involved)."""
    dpkg("--install", *(str(repo.deb(p)) for p in pkgs))


def purge(names: list[str]) -> None:
    if names:
        dpkg("--force-hold", "--force-depends", "--purge", *names)


def purge_all() -> None:
    """Purge every package of this run, and any left by test runs that are gone."""
    purge(sorted(states()))
    stale = []
    for name in states("accord-test-p"):
        match = STALE.match(name)
        if match and not _alive(int(match[1])):
            stale.append(name)
    purge(stale)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
