"""Digests of large files, remembered while the file is unchanged: drift checks over AI models.

An agent observes every ``File`` and ``Artifact`` on each drift check by hashing it. For a
config file that is nothing; for a 10 GB model it is seconds of CPU and disk every minute. So
the digest of a file of at least :data:`LARGE` bytes is remembered with what ``lstat`` says of
it: device, inode, size, modification and change times. An observation whose ``lstat`` matches
all five uses the remembered digest; anything else hashes again.

Why that is safe: writing a file changes its mtime and ctime; ``utime`` can put the mtime back
but not the ctime, which only the kernel sets (git's index and rsync's quick check trust less).
A file whose times are within :data:`RACY_SECONDS` of now is never remembered: a write in the
same clock tick as the ``lstat`` would otherwise go unseen (git's "racily clean" rule).

The memo is in memory, one per process: a long-running agent (and a run's observe, then verify)
gains, while a new ``accord`` process hashes everything once, and ``plan`` writes nothing
anywhere, not even a cache file. Hashing a large file runs in a worker thread, so an agent
keeps heartbeating meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

LARGE = 8 * 1024 * 1024
"""Smaller files are hashed every time: that costs less than remembering them."""
RACY_SECONDS = 2.0
MAX_ENTRIES = 4096

Key = tuple[int, int, int, int, int]  # device, inode, size, mtime_ns, ctime_ns


class DigestMemo:
    """Remembered digests of large files, by path."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Key, str]] = {}

    async def sha256(self, path: str, st: os.stat_result) -> str:
        """The digest of the regular file at ``path``, whose ``lstat`` is ``st``."""
        if st.st_size < LARGE:
            return file_sha256(path)
        key = _key(st)
        known = self._entries.get(path)
        if known is not None and known[0] == key:
            return known[1]
        digest = await asyncio.to_thread(file_sha256, path)
        if time.time() - max(st.st_mtime, st.st_ctime) > RACY_SECONDS:
            self._entries.pop(path, None)
            self._entries[path] = (key, digest)  # newest last: the oldest go first when full
            while len(self._entries) > MAX_ENTRIES:
                del self._entries[next(iter(self._entries))]
        return digest


MEMO = DigestMemo()
"""The process's memo."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Digest a file without following a link at its path (it may have become one since lstat).

    Plain ``os.read`` in 1 MiB chunks: ``hashlib.file_digest`` allocates a 256 KiB buffer per
    call, which costs more than reading a small config file does.
    """
    hasher = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        while chunk := os.read(fd, 1 << 20):
            hasher.update(chunk)
    finally:
        os.close(fd)
    return hasher.hexdigest()


def _key(st: os.stat_result) -> Key:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
