"""accord keeps machines in the state their owners declared.

The public API is what ``__all__`` lists (a test pins it). Names load on first use, so that
``accord``'s command line does not import the whole library before it parses its arguments::

    import asyncio, accord

    async def main() -> None:
        manifest = accord.load_manifest(Path("site.yaml"))
        async with accord.LocalSession(roots=["/srv/demo"], state_dir=Path("/tmp/state")) as s:
            plan, run = await s.converge(manifest, base_dir=Path("."))
        print(run.state, run.changed)

    asyncio.run(main())
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    # model
    "Manifest": "accord.model.manifest",
    "Metadata": "accord.model.manifest",
    "Resource": "accord.model.manifest",
    "StateGoal": "accord.model.manifest",
    "StateFlag": "accord.model.manifest",
    "Spec": "accord.model.specs",
    "FileSpec": "accord.model.specs",
    "DirectorySpec": "accord.model.specs",
    "SymlinkSpec": "accord.model.specs",
    "ArtifactSpec": "accord.model.specs",
    "CommandSpec": "accord.model.specs",
    "PackageSpec": "accord.model.specs",
    "SystemdUnitSpec": "accord.model.specs",
    "ContainerSpec": "accord.model.specs",
    "Action": "accord.model.plan",
    "Change": "accord.model.plan",
    "Plan": "accord.model.plan",
    "Condition": "accord.model.status",
    "Phase": "accord.model.status",
    "ResourceStatus": "accord.model.status",
    "RunRecord": "accord.model.status",
    "RunState": "accord.model.status",
    "parse_manifest": "accord.model.loading",
    # providers
    "Context": "accord.providers.base",
    "Provider": "accord.providers.base",
    "Registry": "accord.providers.registry",
    "Roots": "accord.providers.paths",
    # stores
    "Store": "accord.store.base",
    "open_store": "accord.store",
    # engine
    "Converge": "accord.engine.converge",
    "Options": "accord.engine.converge",
    "RetryPolicy": "accord.engine.retry",
    "LocalSession": "accord.engine.local",
    "load_manifest": "accord.engine.local",
    # errors
    "AccordError": "accord.errors",
    "InputError": "accord.errors",
    "ManifestError": "accord.errors",
    "PermanentError": "accord.errors",
    "TransientError": "accord.errors",
}

__all__ = [
    "AccordError",
    "Action",
    "ArtifactSpec",
    "Change",
    "CommandSpec",
    "Condition",
    "ContainerSpec",
    "Context",
    "Converge",
    "DirectorySpec",
    "FileSpec",
    "InputError",
    "LocalSession",
    "Manifest",
    "ManifestError",
    "Metadata",
    "Options",
    "PackageSpec",
    "PermanentError",
    "Phase",
    "Plan",
    "Provider",
    "Registry",
    "Resource",
    "ResourceStatus",
    "RetryPolicy",
    "Roots",
    "RunRecord",
    "RunState",
    "Spec",
    "StateFlag",
    "StateGoal",
    "Store",
    "SymlinkSpec",
    "SystemdUnitSpec",
    "TransientError",
    "load_manifest",
    "open_store",
    "parse_manifest",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'accord' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return [*__all__, "__version__"]


if TYPE_CHECKING:
    from accord.engine.converge import Converge, Options
    from accord.engine.local import LocalSession, load_manifest
    from accord.engine.retry import RetryPolicy
    from accord.errors import (
        AccordError,
        InputError,
        ManifestError,
        PermanentError,
        TransientError,
    )
    from accord.model.loading import parse_manifest
    from accord.model.manifest import Manifest, Metadata, Resource, StateFlag, StateGoal
    from accord.model.plan import Action, Change, Plan
    from accord.model.specs import (
        ArtifactSpec,
        CommandSpec,
        ContainerSpec,
        DirectorySpec,
        FileSpec,
        PackageSpec,
        Spec,
        SymlinkSpec,
        SystemdUnitSpec,
    )
    from accord.model.status import Condition, Phase, ResourceStatus, RunRecord, RunState
    from accord.providers.base import Context, Provider
    from accord.providers.paths import Roots
    from accord.providers.registry import Registry
    from accord.store import open_store
    from accord.store.base import Store
