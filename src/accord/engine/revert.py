"""The revert policy (``on_failure="revert"``): put back what a failed run applied.

Newest first, each changed resource whose provider is reversible is put back from the snapshot
taken just before its apply (``Slot.before``), and its inventory record is restored (or
removed, if this run adopted it). A revert that fails leaves that change in place and the run
failed; the others are still put back. See ``accord.engine.converge``.
"""

from __future__ import annotations

from accord.engine.inventory import Inventory
from accord.engine.journal import Journal
from accord.engine.refresh import reverting
from accord.engine.report import Reporter
from accord.engine.run_record import fail
from accord.engine.slot import Slot
from accord.model.status import Phase, RunRecord


async def revert(
    run: RunRecord, slots: list[Slot], inventory: Inventory, *, journal: Journal, reporter: Reporter
) -> None:
    """Put back, newest first, what this run applied: the revert policy."""
    done = [s for s in slots if s.phase is Phase.APPLIED and s.change and not s.change.is_noop]
    reporter.phase("revert", len(done))
    triggers: dict[str, tuple[str, ...]] = {s.resource.id: s.triggers for s in slots if s.triggers}
    for slot in reversed(done):
        if not slot.provider.reversible:
            continue
        # Before it changes back: whatever it restarted now runs a stale config.
        await reverting(inventory, slot.resource.id, triggers)
        try:
            note = await slot.provider.delete(slot.ctx, slot.resource.spec, slot.before)
        except Exception as exc:  # noqa: BLE001 - the others are still put back
            # The change stays in place (and in the inventory); the run ends failed.
            fail(slot, exc)
            slot.note = f"revert failed: {slot.error.message if slot.error else exc}"
            await journal.event(run.run_id, "revert_failed", resource=slot.resource.id,
                                error=str(exc))  # fmt: skip
            reporter.step("revert", slot.to_status())
            continue
        slot.phase = Phase.REVERTED
        slot.note = f"reverted: {note}"
        if slot.was_managed and slot.reverted_record is not None:
            await inventory.save(slot.reverted_record)
        elif not slot.was_managed:
            await inventory.remove(slot.resource.id)
        await journal.event(run.run_id, "reverted", resource=slot.resource.id, note=note)
        reporter.step("revert", slot.to_status())
