"""The digest memo of large files: used only while lstat says the file is unchanged."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from accord.providers import digests
from accord.providers.digests import DigestMemo
from helpers import edit_in_place

BIG = b"m" * digests.LARGE


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every real hash of a file, by path; settled files are remembered at once."""
    hashed: list[str] = []
    real = digests.file_sha256

    def counting(path: str | os.PathLike[str]) -> str:
        hashed.append(str(path))
        return real(path)

    monkeypatch.setattr(digests, "file_sha256", counting)
    monkeypatch.setattr(digests, "RACY_SECONDS", -1.0)  # as if every write were seconds old
    return hashed


async def sha(memo: DigestMemo, path: Path) -> str:
    return await memo.sha256(str(path), os.lstat(path))


async def test_a_large_file_is_hashed_once_while_unchanged(
    tmp_path: Path, counted: list[str]
) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(BIG)
    memo = DigestMemo()
    assert await sha(memo, model) == hashlib.sha256(BIG).hexdigest()
    assert await sha(memo, model) == hashlib.sha256(BIG).hexdigest()
    assert counted == [str(model)]


async def test_a_same_size_edit_is_seen_even_with_the_mtime_put_back(
    tmp_path: Path, counted: list[str]
) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(BIG)
    memo = DigestMemo()
    await sha(memo, model)
    edited = b"X" + BIG[1:]
    edit_in_place(model)  # same inode, size and mtime; the ctime still moves
    assert await sha(memo, model) == hashlib.sha256(edited).hexdigest()
    assert len(counted) == 2


async def test_small_files_and_racy_files_are_not_remembered(
    tmp_path: Path, counted: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    small = tmp_path / "app.conf"
    small.write_bytes(b"port = 80\n")
    memo = DigestMemo()
    await sha(memo, small)
    await sha(memo, small)
    assert counted == [str(small), str(small)]
    monkeypatch.setattr(digests, "RACY_SECONDS", 2.0)  # the real rule: just written
    model = tmp_path / "model.bin"
    model.write_bytes(BIG)
    await sha(memo, model)
    await sha(memo, model)
    assert counted[2:] == [str(model), str(model)]


async def test_the_memo_keeps_at_most_its_bound(
    tmp_path: Path, counted: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(digests, "MAX_ENTRIES", 2)
    memo = DigestMemo()
    models = [tmp_path / f"m{i}.bin" for i in range(3)]
    for model in models:
        model.write_bytes(BIG)
        await sha(memo, model)
    await sha(memo, models[0])  # the oldest was forgotten: hashed again
    await sha(memo, models[2])  # the newest is still known
    assert counted == [*map(str, models), str(models[0])]
