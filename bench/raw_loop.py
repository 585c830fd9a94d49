"""The raw-Python baseline for bench_files.py: the same file-system work, written plainly.

Usage: ``python bench/raw_loop.py MANIFEST.json --root ROOT``

It reads the same JSON manifest accord reads and walks its resources in order (directories
come first in the bench manifests), doing what a careful hand-written script would:

* Directory: ``makedirs``; ``chmod`` when the mode differs.
* File: ``lstat``; when the size matches, read the file and compare the bytes; when they
  differ (or the file is missing), write atomically — a temporary file in the same directory,
  write, ``fchmod``, ``fsync``, ``os.replace`` — exactly as accord's ``fsutil.atomic_write``
  does; otherwise ``chmod`` when only the mode differs.

No state store, no journal, no verification pass: this is the floor for the I/O itself. It
prints ``{"changed": K}`` so the harness can check it did the same work as accord.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys


def converge_directory(path: str, mode: int) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
        return True
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
        return True
    return False


def converge_file(path: str, data: bytes, mode: int) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode) and st.st_size == len(data):
        with open(path, "rb") as handle:
            same = handle.read() == data
        if same:
            if stat.S_IMODE(st.st_mode) == mode:
                return False
            os.chmod(path, mode)
            return True
    atomic_write(path, data, mode)
    return True


def atomic_write(path: str, data: bytes, mode: int) -> None:
    temp = os.path.join(os.path.dirname(path), f".raw-{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("--root", required=True)
    args = parser.parse_args(argv)
    with open(args.manifest, "rb") as handle:
        manifest = json.load(handle)
    changed = 0
    for resource in manifest["resources"]:
        spec = resource["spec"]
        path = os.path.join(args.root, spec["path"])
        if resource["kind"] == "Directory":
            changed += converge_directory(path, int(spec.get("mode", "0755"), 8))
        elif resource["kind"] == "File":
            data = spec["content"].encode()
            changed += converge_file(path, data, int(spec.get("mode", "0644"), 8))
        else:
            print(f"raw_loop: unsupported kind {resource['kind']!r}", file=sys.stderr)
            return 2
    print(json.dumps({"changed": changed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
