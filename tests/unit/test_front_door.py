import subprocess
import sys

import accord

PINNED = [
    "AccordError", "Action", "ArtifactSpec", "Change", "CommandSpec", "Condition",
    "ContainerSpec", "Context", "Converge", "DirectorySpec", "FileSpec", "InputError",
    "LocalSession", "Manifest", "ManifestError", "Metadata", "Options", "PackageSpec",
    "PermanentError", "Phase", "Plan", "Provider", "Registry", "Resource", "ResourceStatus",
    "RetryPolicy", "Roots", "RunRecord", "RunState", "Spec", "StateFlag", "StateGoal", "Store",
    "SymlinkSpec", "SystemdUnitSpec", "TransientError", "load_manifest", "open_store",
    "parse_manifest",
]  # fmt: skip


def test_public_api_is_pinned() -> None:
    assert accord.__all__ == sorted(PINNED)
    assert sorted(accord._EXPORTS) == accord.__all__  # every export is listed, and only those


def test_every_public_name_resolves() -> None:
    for name in accord.__all__:
        assert getattr(accord, name) is not None, name


def test_importing_accord_imports_nothing_heavy() -> None:
    heavy = "('pydantic', 'httpx', 'sqlite3')"
    code = f"import sys, accord; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
