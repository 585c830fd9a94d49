"""A recording stand-in for ``systemctl``, for machines (CI, containers) without a running systemd.

:func:`install` writes an executable ``systemctl`` into a directory; put that directory first on
``PATH`` and build the provider with ``SystemdUnitProvider(runtime=True)``. The stand-in

* appends every argv it is called with to ``calls.jsonl`` (one JSON list per line);
* hands every call with ``--root`` to the real ``systemctl`` (found on ``PATH`` at install
  time): unit files and enablement links are the real thing;
* answers ``daemon-reload``, ``start``, ``stop``, ``restart``, ``try-restart``, ``is-active``
  and ``show -p …`` as systemd does, keeping each unit's state in ``units.json``, for the units
  whose files lie under the ``root`` it was installed for (``etc/systemd/system``,
  ``run/systemd/system``, ``usr/lib/systemd/system``, ``lib/systemd/system``; ``a@b.service``
  finds ``a@.service``);
* remembers the unit's files as of the last ``daemon-reload`` (``NeedDaemonReload``) and which
  of those definitions a running unit was started from, so a test can tell a restart before
  the reload from one after it; like systemd it warns when a unit is started from a stale one;
* fails a start whose definition says ``ExecStart=/bin/false`` (the unit ends ``failed``), and
  fails any verb on demand with :meth:`StandIn.fault` (``Failed to connect to bus`` …).

Anything else exits 1 and says so: a test never passes through a call the stand-in ignored.
The script is this module's own source behind a ``#!`` line, so it needs only the standard
library.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UNIT_DIRS = ("etc/systemd/system", "run/systemd/system", "usr/lib/systemd/system",
             "lib/systemd/system")  # fmt: skip
WARN_STALE = (
    "Warning: The unit file, source configuration file or drop-ins of {0} changed on disk. "
    "Run 'systemctl daemon-reload' to reload units."
)


# -- the test's side -----------------------------------------------------------------------


@dataclass(frozen=True)
class StandIn:
    """An installed stand-in: where it is, what it was asked, what it keeps."""

    directory: Path

    @property
    def path(self) -> Path:
        return self.directory / "systemctl"

    def calls(self) -> list[list[str]]:
        """Every argv, in order, ``--root`` calls included."""
        log = self.directory / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def runtime_calls(self) -> list[str]:
        """The calls that reached the service manager, as text: ``["daemon-reload", "restart
        app.service"]`` (``--root`` calls, ``show`` and ``is-active`` left out)."""
        shown = []
        for argv in self.calls():
            if any(a.startswith("--root") for a in argv):
                continue
            words = [a for a in argv if a != "--" and not a.startswith("-")]
            if words and words[0] not in ("show", "is-active"):
                shown.append(" ".join(words))
        return shown

    def forget_calls(self) -> None:
        (self.directory / "calls.jsonl").unlink(missing_ok=True)

    def units(self) -> dict[str, dict[str, Any]]:
        """Each unit the manager has seen: active, sub, since, starts, loaded, started_from."""
        units: dict[str, dict[str, Any]] = _read(self.directory / "units.json").get("units", {})
        return units

    def reloads(self) -> int:
        reloads: int = _read(self.directory / "units.json").get("reloads", 0)
        return reloads

    def set_unit(self, name: str, active: str = "active", sub: str = "running") -> None:
        """Put a unit into a state, as if it had been started (or stopped) before the test."""
        with _locked(self.directory):
            state = _read(self.directory / "units.json")
            unit = _unit(state, name)
            config = _read(self.directory / "standin.json")
            unit["loaded"] = unit["started_from"] = _definition(Path(config["root"]), name)
            unit.update(active=active, sub=sub, since=_now() if active == "active" else "")
            _write(self.directory / "units.json", state)

    def fault(self, verb: str, message: str, *, code: int = 1, times: int = 1) -> None:
        """Make the next ``times`` calls of ``verb`` fail with ``message`` on stderr."""
        with _locked(self.directory):
            faults = _read(self.directory / "faults.json")
            faults[verb] = {"message": message, "code": code, "times": times}
            _write(self.directory / "faults.json", faults)


def install(directory: Path, *, root: Path, real: str | None = None) -> StandIn:
    """Write the stand-in into ``directory`` for units under ``root``.

    ``real`` is the ``systemctl`` that ``--root`` calls go to; by default the one on ``PATH``
    now (before ``directory`` is put first on it). Without one, ``--root`` calls fail loudly.
    """
    directory.mkdir(parents=True, exist_ok=True)
    real = real or shutil.which("systemctl")
    _write(directory / "standin.json", {"root": str(root), "real": real})
    script = directory / "systemctl"
    script.write_text(f"#!{sys.executable} -IS\n" + Path(__file__).read_text())
    script.chmod(0o755)
    return StandIn(directory)


# -- the stand-in's side -----------------------------------------------------------------------


def main(argv: list[str]) -> int:
    here = Path(os.path.realpath(__file__)).parent
    config = _read(here / "standin.json")
    with _locked(here):
        with open(here / "calls.jsonl", "a") as log:
            log.write(json.dumps(argv) + "\n")
        if any(a == "--root" or a.startswith("--root=") for a in argv):
            real = config.get("real")
            if not real:
                return _fail("stand-in systemctl: no real systemctl for a --root call", 1)
            # The lock's descriptor is closed on exec (O_CLOEXEC), so the real one does not
            # hold it.
            os.execv(real, [real, *argv])
        faults = _read(here / "faults.json")
        words, props = _parse(argv)
        if not words:
            return _fail("stand-in systemctl: no verb", 1)
        verb, names = words[0], words[1:]
        fault = faults.get(verb)
        if fault and fault["times"] > 0:
            fault["times"] -= 1
            _write(here / "faults.json", faults)
            return _fail(fault["message"], fault["code"])
        state = _read(here / "units.json")
        code = _answer(Path(config["root"]), state, verb, names, props)
        _write(here / "units.json", state)
        return code


def _answer(
    root: Path, state: dict[str, Any], verb: str, names: list[str], props: list[str]
) -> int:
    if verb == "daemon-reload":
        state["reloads"] = state.get("reloads", 0) + 1
        for name, unit in state.setdefault("units", {}).items():
            unit["loaded"] = _definition(root, name)
        return 0
    if verb == "show":
        blocks = []
        for name in names:
            unit = _unit(state, name)
            if unit.get("loaded") is None:  # asking about a unit loads it, as in systemd
                unit["loaded"] = _definition(root, name)
            values = _properties(root, name, unit)
            blocks.append("\n".join(f"{p}={values.get(p, '')}" for p in props))
        print("\n\n".join(blocks))
        return 0
    if verb == "is-active":
        actives = [_unit(state, name)["active"] for name in names]
        print("\n".join(actives))
        return 0 if all(a == "active" for a in actives) else 3
    if verb in ("start", "stop", "restart", "try-restart"):
        for name in names:
            code = _job(root, state, verb, name)
            if code:
                return code
        return 0
    return _fail(f"stand-in systemctl: unsupported call: {verb} {' '.join(names)}", 1)


def _job(root: Path, state: dict[str, Any], verb: str, name: str) -> int:
    unit = _unit(state, name)
    on_disk = _definition(root, name)
    if _masked(root, name):
        return _fail(f"Failed to {verb} {name}: Unit {name} is masked.", 1)
    if on_disk is None and unit.get("loaded") is None:
        return _fail(f"Failed to {verb} {name}: Unit {name} not found.", 5)
    if verb == "stop":
        if unit["active"] != "inactive":
            unit.update(active="inactive", sub="dead")
        return 0
    if verb == "try-restart" and unit["active"] != "active":
        return 0
    if verb == "start" and unit["active"] == "active":
        return 0
    if unit.get("loaded") is None:  # first use: the manager loads it now
        unit["loaded"] = on_disk
    elif unit["loaded"] != on_disk:
        print(WARN_STALE.format(name), file=sys.stderr)
    unit["started_from"] = unit["loaded"]
    unit["starts"] = unit.get("starts", 0) + 1
    if unit["loaded"] is not None and "ExecStart=/bin/false" in unit["loaded"]["text"]:
        unit.update(active="failed", sub="failed", since="")
        return _fail(
            f"Job for {name} failed because the control process exited with error code.\n"
            f'See "systemctl status {name}" and "journalctl -xeu {name}" for details.',
            1,
        )
    unit.update(active="active", sub="running", since=_now())
    return 0


def _properties(root: Path, name: str, unit: dict[str, Any]) -> dict[str, str]:
    on_disk = _definition(root, name)
    loaded = unit.get("loaded")
    if _masked(root, name):
        load = "masked"
    elif loaded is not None or on_disk is not None:
        load = "loaded"
    else:
        load = "not-found"
    stale = loaded is not None and loaded != on_disk
    return {
        "ActiveState": unit["active"],
        "SubState": unit["sub"],
        "ActiveEnterTimestamp": unit.get("since", ""),
        "LoadState": load,
        "NeedDaemonReload": "yes" if stale else "no",
        "Id": name,
    }


def _definition(root: Path, name: str) -> dict[str, str] | None:
    """The unit's files as the manager would load them now: their text and its digest."""
    template = name.split("@", 1)[0] + "@." + name.rsplit(".", 1)[1] if "@" in name else name
    for directory in UNIT_DIRS:
        for candidate in dict.fromkeys((name, template)):
            path = root / directory / candidate
            if path.is_file():
                text = path.read_text()
                dropins = root / directory / f"{candidate}.d"
                if dropins.is_dir():
                    for dropin in sorted(dropins.glob("*.conf")):
                        text += f"\n# {dropin.name}\n" + dropin.read_text()
                return {"text": text, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    return None


def _masked(root: Path, name: str) -> bool:
    for directory in ("etc/systemd/system", "run/systemd/system"):
        path = root / directory / name
        if path.is_symlink() and os.readlink(path) == "/dev/null":
            return True
        if path.is_file() and path.stat().st_size == 0:
            return True
    return False


def _unit(state: dict[str, Any], name: str) -> dict[str, Any]:
    units: dict[str, dict[str, Any]] = state.setdefault("units", {})
    return units.setdefault(name, {"active": "inactive", "sub": "dead", "since": ""})


def _parse(argv: list[str]) -> tuple[list[str], list[str]]:
    """(verb and unit names, the properties asked for with -p/--property)."""
    words: list[str] = []
    props: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in ("-p", "--property"):
            props += next(args, "").split(",")
        elif arg.startswith("--property="):
            props += arg.removeprefix("--property=").split(",")
        elif arg == "--" or arg.startswith("-"):
            continue  # --no-pager, --quiet, --no-block, the end of options
        else:
            words.append(arg)
    return words, [p for p in props if p]


def _now() -> str:
    return time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime())


def _fail(message: str, code: int) -> int:
    print(message, file=sys.stderr)
    return code


def _read(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(temp, path)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One call at a time: the engine runs several units' calls at once."""
    with open(directory / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
