"""Child process for the crash test: one transition, SIGKILLed right after its k-th write.

Usage: python lifecycle_child.py DB NODE TARGET K   (K = 0: no kill)
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from accord.lifecycle.definition import Facts, default_lifecycle
from accord.lifecycle.nodes import transition
from accord.store import open_store

WRITES = ("create", "update", "put", "delete", "append")


class KillAfter:
    """A store proxy that SIGKILLs this process right after its k-th write returns."""

    def __init__(self, store: Any, k: int) -> None:
        self._store, self._k, self._writes = store, k, 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name not in WRITES:
            return attribute

        async def write(*args: Any, **kwargs: Any) -> Any:
            result = await attribute(*args, **kwargs)
            self._writes += 1
            if self._writes == self._k:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return write


async def main(db: str, node: str, target: str, k: int) -> None:
    store = KillAfter(await open_store(f"sqlite:///{db}"), k)
    facts = Facts(reason="crash test", roles=frozenset({"operator"}), converged=True)
    await transition(store, default_lifecycle(), node, target, initiator="crash-test", facts=facts)
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
