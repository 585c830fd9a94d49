"""From any starting tree, one apply reaches the goal and a second apply changes nothing.

Hypothesis draws the starting state of every managed path — missing, partial, wrong content,
wrong mode, an empty file, a symlink in the way — plus unmanaged files beside them, and the
property is checked against a real tmp root and a real SQLite state dir.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.engine.converge import Options
from accord.engine.local import LocalSession
from accord.model.status import RunRecord, RunState
from helpers import build_manifest, file

DIRS = {"d0": 0o755, "d1": 0o750}
FILES = {
    f"f{i}": (
        f"d{i % 2}/f{i}.conf",
        f"setting-{i} = {i * 7}\n" * (i + 1),
        0o640 if i % 2 else 0o644,
    )
    for i in range(6)
}
FILE_STATES = ["missing", "partial", "wrong", "empty", "wrong-mode", "correct", "link-in-the-way"]
DIR_STATES = ["missing", "wrong-mode", "correct"]

DIRECTORIES = [
    {"id": d, "kind": "Directory", "spec": {"path": d, "mode": f"{m:04o}"}} for d, m in DIRS.items()
]
FILE_RESOURCES = [
    file(fid, path, content, mode=f"{mode:04o}", depends_on=[path.split("/")[0]])
    for fid, (path, content, mode) in FILES.items()
]
LINK = {
    "id": "link",
    "kind": "Symlink",
    "spec": {"path": "current.conf", "target": "d0/f0.conf"},
    "depends_on": ["f0"],
}
MANIFEST = build_manifest([*DIRECTORIES, *FILE_RESOURCES, LINK])


def arrange(root: Path, dirs: dict[str, str], files: dict[str, str], extras: list[str]) -> None:
    for d, state in dirs.items():
        if state != "missing":
            (root / d).mkdir()
            os.chmod(root / d, DIRS[d] if state == "correct" else 0o700)
    for fid, state in files.items():
        path, content, mode = FILES[fid]
        target = root / path
        if state == "missing":
            continue
        target.parent.mkdir(exist_ok=True)
        if state == "link-in-the-way":
            target.symlink_to("elsewhere")
            continue
        data = {"partial": content[: len(content) // 2], "wrong": "nope\n", "empty": ""}
        target.write_text(data.get(state, content))
        os.chmod(target, 0o600 if state == "wrong-mode" else mode)
    for name in extras:
        (root / "d1").mkdir(exist_ok=True)
        (root / "d1" / name).write_text(f"unmanaged {name}\n")


def snapshot(root: Path) -> dict[str, tuple[str, str, int]]:
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = ("link", os.readlink(path), 0)
        elif path.is_dir():
            found[key] = ("dir", "", path.stat().st_mode & 0o777)
        else:
            found[key] = ("file", path.read_text(), path.stat().st_mode & 0o777)
    return found


def apply(root: Path, state: Path) -> RunRecord:
    async def run() -> RunRecord:
        async with LocalSession(roots=[root], state_dir=state) as session:
            _, record = await session.converge(MANIFEST, base_dir=root, options=Options())
            return record

    return asyncio.run(run())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dirs=st.fixed_dictionaries({d: st.sampled_from(DIR_STATES) for d in DIRS}),
    files=st.fixed_dictionaries({f: st.sampled_from(FILE_STATES) for f in FILES}),
    extras=st.lists(st.sampled_from(["notes.txt", "backup.conf", "x"]), unique=True, max_size=3),
)
def test_one_apply_converges_and_a_second_changes_nothing(
    dirs: dict[str, str], files: dict[str, str], extras: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root, state = Path(tmp) / "root", Path(tmp) / "state"
        root.mkdir()
        arrange(root, dirs, files, extras)

        first = apply(root, state)
        assert first.state is RunState.SUCCEEDED, first.resources
        tree = snapshot(root)
        for d, mode in DIRS.items():
            assert tree[d] == ("dir", "", mode)
        for path, content, mode in FILES.values():
            assert tree[path] == ("file", content, mode)
        assert tree["current.conf"] == ("link", "d0/f0.conf", 0)
        for name in extras:  # unmanaged neighbours are left alone
            assert tree[f"d1/{name}"] == ("file", f"unmanaged {name}\n", tree[f"d1/{name}"][2])

        second = apply(root, state)
        assert second.state is RunState.SUCCEEDED and second.changed == 0, second.resources
        assert snapshot(root) == tree
