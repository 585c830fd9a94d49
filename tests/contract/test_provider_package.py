"""The provider contract over ``Package``, on the machine's real dpkg and apt.

Tiny .debs from a local repository (``tests/debrepo.py``) served over HTTP on 127.0.0.1; apt
reads only that repository (``APT_CONFIG``). "The sources are gone" means the server hangs up
on every request. ``live_extra`` is dpkg's state of this run's test packages, so the suite
checks that observe and stage leave them alone and that delete puts them back. The packages
really get installed: without root, dpkg or apt every case is skipped, with the reason.

``app`` 1.0 needs ``lib`` >= 1.0 and 2.0 needs ``lib`` >= 1.1, so upgrading and downgrading
``app`` carries ``lib`` along; ``app`` has a conffile, so removing it leaves config files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import debrepo
from accord.model.specs import PackageSpec
from accord.providers.package import PackageProvider
from accord.testing.provider_contract import Desired, Node, ProviderContract, Sandbox, Start
from debrepo import Pkg, Repo

LIB1, LIB11 = Pkg("lib", "1.0"), Pkg("lib", "1.1")
APP1 = Pkg("app", "1.0", "{lib} (>= 1.0)", conffile=True)
APP2 = Pkg("app", "2.0", "{lib} (>= 1.1)", conffile=True)
APP = APP1.name

NEEDS_DPKG = () if debrepo.SKIP_REASON is None else (pytest.mark.skip(debrepo.SKIP_REASON),)
REPO: list[Repo] = []  # the module's repository, for the starts and withdraw_sources


@pytest.fixture(scope="module")
def package_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    with debrepo.serving(tmp_path_factory.mktemp("apt-repo")) as repo:
        repo.add(LIB1, LIB11, APP1, APP2)
        repo.configure_apt(repo.http_source())
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("APT_CONFIG", str(repo.apt_config))
            debrepo.purge_all()
            repo.update()
            REPO.append(repo)
            try:
                yield repo
            finally:
                REPO.remove(repo)
                debrepo.purge_all()


def _installed(*pkgs: Pkg) -> Callable[[Sandbox], None]:
    return lambda sandbox: debrepo.install(REPO[0], *pkgs)


def _config_files_of_app1(sandbox: Sandbox) -> None:
    debrepo.install(REPO[0], LIB1, APP1)
    debrepo.dpkg("--remove", APP)


class TestPackage(ProviderContract):
    provider = PackageProvider()
    desired = [
        Desired("any", lambda sb: PackageSpec(name=APP), marks=NEEDS_DPKG),
        Desired("pinned-1.0", lambda sb: PackageSpec(name=APP, version="1.0"), marks=NEEDS_DPKG),
        Desired(
            "absent-purged",
            lambda sb: PackageSpec(name=APP, state="absent", purge=True),
            marks=NEEDS_DPKG,
        ),
    ]
    starts = [
        Start("absent", lambda sb: None),
        Start("app-1.0", _installed(LIB1, APP1)),
        Start("app-2.0", _installed(LIB11, APP2)),
        Start("config-files-of-1.0", _config_files_of_app1),
    ]

    @pytest.fixture(autouse=True)
    def _clean_machine(self, package_repo: Repo) -> Iterator[None]:
        package_repo.reachable = True
        yield
        package_repo.reachable = True
        debrepo.purge_all()

    def live_extra(self, sandbox: Sandbox) -> dict[str, Node]:
        return {
            name: Node(type="other", mode=0, uid=0, gid=0, data=state)
            for name, state in debrepo.states().items()
        }

    def withdraw_sources(self, sandbox: Sandbox) -> None:
        REPO[0].reachable = False
