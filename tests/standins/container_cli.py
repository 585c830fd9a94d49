"""A recording stand-in for the ``docker`` and ``podman`` CLIs: no engine runs in these tests.

This is the script the shims on ``PATH`` run (``standins.container.StandIn`` sets it up and
reads what it did). Each call appends its argv to ``log.jsonl``; containers, local images and a
fake registry live in ``state.json`` in the stand-in's directory, under a lock.

It answers the commands the ``Container`` provider uses — ``version``, ``container inspect``,
``image inspect``, ``pull``, ``create``, ``start``, ``stop``, ``rm``, ``rename`` — with the real
CLIs' JSON shapes, messages and exit codes for the flavour it plays, as read in the engines'
sources and docs:

* docker: ``Name`` is ``"/web"``; ``Image`` and image ``Id`` carry ``sha256:``; missing objects
  say ``Error: No such container: web`` (exit 1, ``[]`` on stdout for inspect); daemon errors
  on create/start are ``Error response from daemon: …`` (create: exit 125); ``rm --force`` of a
  missing container succeeds quietly; with no daemon every call says ``Cannot connect to the
  Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?`` (exit 1, and
  inspect still prints ``[]``: output alone cannot tell "absent" from "no engine").
* podman: ``Name`` is ``"web"``; ids are bare hex (plus ``ImageName``, ``ImageDigest``);
  ``Config.Env`` gains ``container=podman``; missing objects say ``Error: no such container
  web`` / ``Error: …: image not known`` (exit 125), ``rm`` of a missing container exits 1.

Anything else it is asked exits 2 with ``stand-in: unsupported``, so a provider that starts
calling something new fails loudly here rather than passing against a guess. Times come from a
counter (``2025-01-01T00:00:NNZ``), so repeated inspects are equal.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys

# Every call of the CLI starts a Python: it imports only what it needs (typing, pathlib and
# subprocess would double its start-up time).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"
DOCKER_DOWN = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
    "Is the docker daemon running?"
)
PODMAN_DOWN = (
    "Cannot connect to Podman. Please verify your connection to the Linux system using "
    "`podman system connection list`, or try `podman machine init` and `podman machine start` "
    "to manage a new Linux VM\nError: unable to connect to Podman socket: failed to connect: "
    "dial unix /run/podman/podman.sock: connect: no such file or directory"
)


class Exit(Exception):
    """End the call with this status, having printed ``stdout`` and ``stderr``."""

    def __init__(self, code: int, stderr: str = "", stdout: str = "") -> None:
        super().__init__(stderr)
        self.code, self.stderr, self.stdout = code, stderr, stdout


# The CLI side


class Engine:
    """One call of the CLI against the state."""

    def __init__(self, flavor: str, state: dict[str, Any]) -> None:
        self.flavor = flavor
        self.docker = flavor == "docker"
        self.state = state
        self.out: list[str] = []

    def tick(self) -> str:
        self.state["clock"] += 1
        stamp = f"2025-01-01T00:{self.state['clock'] // 60:02d}:{self.state['clock'] % 60:02d}"
        return f"{stamp}.000000001Z" if self.docker else f"{stamp}.000000001+00:00"

    def main(self, args: list[str]) -> None:
        if self.state.get("down"):
            if args[:1] == ["version"]:
                client = {"Version": "28.2.2", "ApiVersion": "1.50", "Os": "linux"}
                raise Exit(1, DOCKER_DOWN, json.dumps({"Client": client, "Server": None}) + "\n")
            if self.docker:
                raise Exit(1, DOCKER_DOWN, "[]\n" if "inspect" in args[:2] else "")
            raise Exit(125, PODMAN_DOWN)
        verb, rest = (
            (" ".join(args[:2]), args[2:])
            if args[:1] in (["container"], ["image"])
            else (
                args[0] if args else "",
                args[1:],
            )
        )
        handler = {
            "version": self.version,
            "container inspect": self.inspect_container,
            "image inspect": self.inspect_image,
            "pull": self.pull,
            "create": self.create,
            "start": self.start,
            "stop": self.stop,
            "rm": self.rm,
            "rename": self.rename,
        }.get(verb)
        if handler is None:
            raise Exit(2, f"stand-in: unsupported: {' '.join(args)}")
        handler(rest)

    # version

    def version(self, args: list[str]) -> None:
        if self.docker:
            info = {
                "Client": {"Version": "28.2.2", "ApiVersion": "1.50", "Os": "linux"},
                "Server": {"Version": "28.2.2", "ApiVersion": "1.50", "Os": "linux"},
            }
        else:
            info = {"Client": {"APIVersion": "5.4.0", "Version": "5.4.0", "Os": "linux"}}
        self.out.append(json.dumps(info))

    # Lookups

    def container(self, key: str) -> dict[str, Any] | None:
        """By exact name, else full id, else id prefix — as the engines resolve."""
        containers = self.state["containers"]
        for record in containers.values():
            if record["name"] == key:
                return dict(record)
        matches = [c for i, c in containers.items() if i.startswith(key)]
        return dict(matches[0]) if len(matches) == 1 else None

    def image(self, key: str) -> dict[str, Any] | None:
        images = self.state["images"]
        if key in images:
            return dict(images[key])
        bare = key.removeprefix("sha256:")
        for image in images.values():
            if len(bare) >= 12 and image["id"].startswith(bare):
                return dict(image)
        return None

    def no_container(self, name: str, *, verb: str) -> Exit:
        if self.docker:
            if verb == "inspect":
                return Exit(1, f"Error: No such container: {name}", "[]\n")
            daemon = f"Error response from daemon: No such container: {name}"
            if verb == "start":
                return Exit(1, f"{daemon}\nError: failed to start containers: {name}")
            return Exit(1, daemon)
        if verb == "inspect":
            return Exit(125, f"Error: no such container {name}", "[]\n")
        code = 1 if verb == "rm" else 125
        return Exit(code, f'Error: no container with name or ID "{name}" found: no such container')

    def no_image(self, reference: str, *, verb: str) -> Exit:
        if self.docker:
            if verb == "inspect":
                return Exit(1, f"Error: No such image: {reference}", "[]\n")
            return Exit(125, f"Error response from daemon: No such image: {reference}")
        return Exit(
            125, f"Error: {reference}: image not known", "[]\n" if verb == "inspect" else ""
        )

    # inspect

    def inspect_container(self, args: list[str]) -> None:
        record = self.container(args[-1])
        if record is None:
            raise self.no_container(args[-1], verb="inspect")
        self.out.append(json.dumps([self.container_json(record)], indent=4))

    def inspect_image(self, args: list[str]) -> None:
        image = self.image(args[-1])
        if image is None:
            raise self.no_image(args[-1], verb="inspect")
        self.out.append(json.dumps([self.image_json(image)], indent=4))

    def image_json(self, image: dict[str, Any]) -> dict[str, Any]:
        config = {"Env": image["env"], "Cmd": image["cmd"], "Entrypoint": image["entrypoint"]}
        data: dict[str, Any] = {
            "Id": f"sha256:{image['id']}" if self.docker else image["id"],
            "RepoTags": image["tags"],
            "RepoDigests": [f"{image['repo']}@{image['digest']}"],
            "Created": "2025-01-01T00:00:00Z",
            "Config": {**config, "Labels": None},
            "Architecture": "amd64",
            "Os": "linux",
            "Size": 4_000_000,
        }
        if not self.docker:
            data.update(Digest=image["digest"], Labels=None)
        return data

    def container_json(self, c: dict[str, Any]) -> dict[str, Any]:
        bindings = {
            f"{p['container']}/{p['protocol']}": [{"HostIp": p["ip"], "HostPort": str(p["host"])}]
            for p in c["ports"]
        }
        state = {
            "Status": c["status"],
            "Running": c["running"],
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": c["pid"] if c["running"] else 0,
            "ExitCode": 0,
            "Error": "",
            "StartedAt": c["started_at"] or ZERO_TIME,
            "FinishedAt": c["finished_at"] or ZERO_TIME,
        }
        config = {
            "Hostname": c["id"][:12],
            "Domainname": "",
            "User": "",
            "Tty": False,
            "Env": c["env"],
            "Cmd": c["cmd"],
            "Image": c["image"],
            "Volumes": None,
            "WorkingDir": "",
            "Entrypoint": c["entrypoint"],
            "Labels": c["labels"],
        }
        host: dict[str, Any] = {
            "NetworkMode": "bridge",
            "PortBindings": bindings,
            "RestartPolicy": {"Name": c["restart"], "MaximumRetryCount": 0},
            "AutoRemove": False,
        }
        data: dict[str, Any] = {
            "Id": c["id"],
            "Created": c["created"],
            "Path": (c["entrypoint"] or c["cmd"] or [""])[0],
            "Args": ((c["entrypoint"] or []) + (c["cmd"] or []))[1:],
            "State": state,
            "Name": f"/{c['name']}" if self.docker else c["name"],
            "RestartCount": c["restart_count"],
            "Mounts": [self.mount_json(m) for m in c["mounts"]],
            "Config": config,
            "HostConfig": host,
            "NetworkSettings": {"Ports": bindings if c["running"] else {}},
        }
        if self.docker:
            data.update(Image=f"sha256:{c['image_id']}", Driver="overlay2", Platform="linux")
            host.update(
                Binds=None,
                Mounts=[
                    {
                        "Type": m["type"],
                        "Source": m["source"],
                        "Target": m["target"],
                        **({"ReadOnly": True} if m["read_only"] else {}),
                    }
                    for m in c["mounts"]
                ],
            )
        else:
            data.update(
                Image=c["image_id"],
                ImageDigest=c["image_digest"],
                ImageName=c["image"],
                Driver="overlay",
                Pod="",
            )
            state.update(OciVersion="1.2.0", ConmonPid=c["pid"] - 1 if c["running"] else 0)
            config["CreateCommand"] = ["podman", *c["argv"]]
            host["Binds"] = [
                f"{m['source']}:{m['target']}:{'ro' if m['read_only'] else 'rw'},rprivate,rbind"
                for m in c["mounts"]
            ]
        return data

    def mount_json(self, m: dict[str, Any]) -> dict[str, Any]:
        rw = not m["read_only"]
        if m["type"] == "bind":
            if self.docker:
                return {"Type": "bind", "Source": m["source"], "Destination": m["target"],
                        "Mode": "", "RW": rw, "Propagation": "rprivate"}  # fmt: skip
            return {"Type": "bind", "Source": m["source"], "Destination": m["target"],
                    "Driver": "", "Mode": "", "Options": ["rbind"], "RW": rw,
                    "Propagation": "rprivate"}  # fmt: skip
        if self.docker:
            return {"Type": "volume", "Name": m["source"],
                    "Source": f"/var/lib/docker/volumes/{m['source']}/_data",
                    "Destination": m["target"], "Driver": "local", "Mode": "z", "RW": rw,
                    "Propagation": ""}  # fmt: skip
        return {"Type": "volume", "Name": m["source"],
                "Source": f"/var/lib/containers/storage/volumes/{m['source']}/_data",
                "Destination": m["target"], "Driver": "local", "Mode": "",
                "Options": ["nosuid", "nodev", "rbind"], "RW": rw,
                "Propagation": "rprivate"}  # fmt: skip

    # pull

    def pull(self, args: list[str]) -> None:
        reference = args[-1]
        host = reference.split("/")[0]
        if self.state.get("offline"):
            url = f'Get "https://{host}/v2/": dial tcp: lookup {host}: no such host'
            if self.docker:
                raise Exit(1, f"Error response from daemon: {url}")
            raise Exit(
                125,
                f"Error: initializing source docker://{reference}: pinging container registry "
                f"{host}: {url}",
            )
        image = self.state["registry"].get(reference)
        if image is None:
            if self.docker:
                raise Exit(
                    1,
                    f"Error response from daemon: pull access denied for {reference}, repository "
                    "does not exist or may require 'docker login': denied: requested access to "
                    "the resource is denied",
                )
            raise Exit(
                125,
                f"Error: initializing source docker://{reference}: reading manifest in "
                f"{reference}: manifest unknown",
            )
        self.state["images"][reference] = image
        if self.docker:
            self.out.append(
                f"Pulling from {image['repo']}\n{image['id'][:12]}: Pull complete\n"
                f"Digest: {image['digest']}\nStatus: Downloaded newer image for {reference}\n"
                f"{reference}"
            )
        else:
            self.out.append(
                f"Trying to pull {reference}...\nGetting image source signatures\n"
                f"Copying blob {image['id'][:12]} done\nWriting manifest to image destination\n"
                f"{image['id']}"
            )

    # create

    def create(self, args: list[str]) -> None:
        argv = ["create", *args]
        options: dict[str, list[str]] = {}
        takes_value = {
            "--name": "name", "--pull": "pull", "--label-file": "label-file", "--label": "label",
            "-l": "label", "--env-file": "env-file", "--env": "env", "-e": "env",
            "--restart": "restart", "--publish": "publish", "-p": "publish", "--mount": "mount",
        }  # fmt: skip
        rest = list(args)
        while rest and rest[0].startswith("-"):
            flag = rest.pop(0)
            name, _, value = flag.partition("=")
            if name not in takes_value:
                raise Exit(125, f"unknown flag: {name}\nSee '{self.flavor} create --help'.")
            if not _:
                if not rest:
                    raise Exit(125, f"flag needs an argument: {name}")
                value = rest.pop(0)
            options.setdefault(takes_value[name], []).append(value)
        if not rest:
            raise Exit(125, f'"{self.flavor} create" requires at least 1 argument.')
        reference, command = rest[0], rest[1:]
        name = (options.get("name") or [""])[-1]
        if (options.get("pull") or ["missing"])[-1] != "never":
            raise Exit(2, "stand-in: create without --pull=never would pull; accord never does")
        image = self.image(reference)
        if image is None:
            raise self.no_image(reference, verb="create")
        clash = self.container(name)
        if clash is not None and clash["name"] == name:
            raise self.name_in_use(name, clash["id"], code=125)
        mounts = [_parse_mount(text) for text in options.get("mount", [])]
        for m in mounts:
            if m["type"] == "bind" and not os.path.exists(m["source"]):
                if self.docker:
                    raise Exit(
                        125,
                        'Error response from daemon: invalid mount config for type "bind": '
                        f"bind source path does not exist: {m['source']}",
                    )
                raise Exit(125, f"Error: statfs {m['source']}: no such file or directory")
        env = list(image["env"]) + ([] if self.docker else ["container=podman"])
        for line in _kv_lines(options.get("env-file", [])) + options.get("env", []):
            key = line.partition("=")[0]
            env = [e for e in env if e.partition("=")[0] != key] + [line]
        labels = dict(
            line.partition("=")[::2]
            for line in _kv_lines(options.get("label-file", [])) + options.get("label", [])
        )
        container_id = hashlib.sha256(f"{name}#{self.state['clock']}#{argv}".encode()).hexdigest()
        self.state["containers"][container_id] = {
            "id": container_id,
            "name": name,
            "argv": argv,
            "image": reference,
            "image_id": image["id"],
            "image_digest": image["digest"],
            "cmd": command or image["cmd"],
            "entrypoint": image["entrypoint"],
            "env": env,
            "labels": labels,
            "restart": (options.get("restart") or ["no"])[-1],
            "ports": [_parse_publish(text) for text in options.get("publish", [])],
            "mounts": mounts,
            "status": "created",
            "running": False,
            "pid": 0,
            "created": self.tick(),
            "started_at": None,
            "finished_at": None,
            "restart_count": 0,
        }
        self.out.append(container_id)

    def name_in_use(self, name: str, owner: str, *, code: int) -> Exit:
        if self.docker:
            return Exit(
                code,
                f'Error response from daemon: Conflict. The container name "/{name}" is already '
                f'in use by container "{owner}". You have to remove (or rename) that container '
                "to be able to reuse that name.",
            )
        return Exit(
            125,
            f'Error: creating container storage: the container name "{name}" is already in use '
            f"by {owner}. You have to remove that container to be able to reuse that name: that "
            "name is already in use",
        )

    # start, stop, rm, rename

    def start(self, args: list[str]) -> None:
        record = self.found(args[-1], verb="start")
        if not record["running"]:
            record.update(running=True, status="running", started_at=self.tick(),
                          pid=1000 + self.state["clock"])  # fmt: skip
        self.out.append(args[-1])

    def stop(self, args: list[str]) -> None:
        record = self.found(args[-1], verb="stop")
        if record["running"]:
            record.update(running=False, status="exited", finished_at=self.tick(), pid=0)
        self.out.append(args[-1])

    def rm(self, args: list[str]) -> None:
        force = any(a in ("-f", "--force") for a in args[:-1])
        record = self.container(args[-1])
        if record is None:
            if self.docker and force:
                return  # docker ignores "no such container" with --force
            raise self.no_container(args[-1], verb="rm")
        if record["running"] and not force:
            if self.docker:
                raise Exit(
                    1,
                    f'Error response from daemon: cannot remove container "/{record["name"]}": '
                    "container is running: stop the container before removing or force remove",
                )
            raise Exit(
                2,
                f"Error: cannot remove container {record['id']} as it is running - running or "
                "paused containers cannot be removed without force: container state improper",
            )
        del self.state["containers"][record["id"]]
        self.out.append(args[-1])

    def rename(self, args: list[str]) -> None:
        old, new = args[-2], args[-1]
        record = self.found(old, verb="rename")
        clash = self.container(new)
        if clash is not None and clash["name"] == new:
            raise self.name_in_use(new, clash["id"], code=1)
        record["name"] = new

    def found(self, key: str, *, verb: str) -> dict[str, Any]:
        record = self.container(key)
        if record is None:
            raise self.no_container(key, verb=verb)
        stored: dict[str, Any] = self.state["containers"][record["id"]]
        return stored


def _kv_lines(files: list[str]) -> list[str]:
    """``--env-file``/``--label-file`` as docker reads them: a line per entry, ``#`` comments,
    leading blanks dropped, the value kept as written."""
    lines = []
    for name in files:
        with open(name) as file:
            content = file.read()
        for raw in content.splitlines():
            line = raw.lstrip()
            if not line or line.startswith("#"):
                continue
            key = line.partition("=")[0]
            if any(c.isspace() for c in key):
                raise Exit(125, f"variable '{key}' contains whitespaces")
            lines.append(line)
    return lines


def _parse_publish(text: str) -> dict[str, Any]:
    spec, _, protocol = text.partition("/")
    ip = ""
    if spec.startswith("["):
        ip, _, spec = spec[1:].partition("]:")
    parts = spec.split(":")
    if len(parts) == 3:
        ip, parts = parts[0], parts[1:]
    if len(parts) != 2:
        raise Exit(125, f"invalid publish spec: {text}")
    return {"ip": ip, "host": int(parts[0]), "container": int(parts[1]),
            "protocol": protocol or "tcp"}  # fmt: skip


def _parse_mount(text: str) -> dict[str, Any]:
    fields = dict(part.partition("=")[::2] for part in text.split(","))
    kind = fields.get("type", "volume")
    source = fields.get("source") or fields.get("src") or ""
    target = fields.get("target") or fields.get("destination") or fields.get("dst") or ""
    read_only = fields.get("readonly", fields.get("ro", "false")) in ("", "true", "1")
    if "readonly" not in fields and "ro" not in fields:
        read_only = False
    if not target:
        raise Exit(125, f'invalid argument {text!r} for "--mount" flag: target is required')
    return {"type": kind, "source": source, "target": target, "read_only": read_only}


def load(directory: str) -> dict[str, Any]:
    path = os.path.join(directory, "state.json")
    if not os.path.exists(path):
        return {"registry": {}, "images": {}, "containers": {}, "clock": 0}
    with open(path) as file:
        state: dict[str, Any] = json.load(file)
    return state


def save(directory: str, state: dict[str, Any]) -> None:
    path = os.path.join(directory, "state.json")
    with open(path + ".tmp", "w") as file:
        json.dump(state, file, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


def main(argv: list[str]) -> int:
    flavor, directory, args = argv[0], argv[1], argv[2:]
    with open(os.path.join(directory, "lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(os.path.join(directory, "log.jsonl"), "a") as log:
            log.write(json.dumps({"flavor": flavor, "argv": args}) + "\n")
        state = load(directory)
        engine = Engine(flavor, state)
        try:
            engine.main(args)
        except Exit as done:
            sys.stdout.write(done.stdout)
            sys.stderr.write(done.stderr + "\n" if done.stderr else "")
            return done.code
        save(directory, state)
    if engine.out:
        sys.stdout.write("\n".join(engine.out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
