"""A ``run --standby`` node: every stream it encodes is staged and published only while it holds the lease.

:class:`Redundancy` owns the node's side of failover: the replica embedded in
the node's store (it mirrors what the active node publishes, so this node's
origin serves the stream too and a take-over continues it), the
:class:`~packager.standby.StandbyStore` the pipelines publish into, and one
:class:`~packager.failover.StreamFailover` per stream. It is also the ingest
manager's claims: a push to a standby node is always accepted (the broadcaster
pushes the same feed to both nodes); the lease decides who publishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from fractions import Fraction

from packager.failover import FailoverSettings, StreamFailover
from packager.redisstore.replica import RedisReplica
from packager.standby import StandbyStore, StandbyStream
from packager.store import Store
from packager.timebase import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)


def failover_settings(part_s: Fraction, slate_after_s: float) -> FailoverSettings:
    """A lease of two parts, renewed every half part; the lease polled every quarter part."""
    part = float(part_s)
    return FailoverSettings(lease_s=2 * part, poll_s=part / 4, report_s=part, slate_after_s=slate_after_s)


class Redundancy:
    """The failover side of a redundant node. Event-loop only."""

    def __init__(
        self,
        shared: object,
        store: Store,
        settings: FailoverSettings,
        pipelines: Mapping[str, object],
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.shared = shared
        self.node_id: str = shared.node_id  # type: ignore[attr-defined]
        self.store = store
        self.settings = settings
        self.pipelines = pipelines
        self.clock = clock
        self.replica = RedisReplica(shared.target, store=store, clock=clock)  # type: ignore[attr-defined]
        self.staging = StandbyStore(self._opened, clock=clock)
        self.controllers: dict[str, StreamFailover] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def publisher(self):  # type: ignore[no-untyped-def]
        return self.shared.publisher  # type: ignore[attr-defined]

    @property
    def registry(self):  # type: ignore[no-untyped-def]
        return self.publisher.registry

    async def start(self) -> None:
        await self.replica.start()

    def _opened(self, staged: StandbyStream) -> None:
        """A pipeline opened its stream: control its failover (a stream re-opened replaces its controller)."""
        old = self.controllers.pop(staged.name, None)
        if old is not None:
            asyncio.get_running_loop().create_task(old.close())
        controller = StreamFailover(
            staged, self, self.store, lambda: self._input_state(staged.name), self.settings, clock=self.clock
        )
        self.controllers[staged.name] = controller
        self._tasks[staged.name] = asyncio.get_running_loop().create_task(controller.run())

    def _input_state(self, name: str) -> tuple[str, float]:
        pipeline = self.pipelines.get(name)
        source = getattr(pipeline, "source", None)
        state = getattr(source, "input_state", None)
        if state is None:  # a test source or a pull URL: live while its pipeline runs
            started = getattr(self.store.get(name), "started_utc_s", self.clock.utc_s())
            return "live", started
        return state()  # type: ignore[no-any-return]

    def role(self, name: str) -> str | None:
        controller = self.controllers.get(name)
        return controller.role if controller is not None else None

    # -- the ingest manager's claims: every push is accepted; the lease decides who publishes
    async def claim(self, stream: str) -> str | None:
        return None

    async def release(self, stream: str) -> None:
        return None

    async def stand_down(self) -> list[str]:
        """Shutting down: hand each active stream to a live standby; the names this node must end itself."""
        keep = []
        for name, controller in list(self.controllers.items()):
            if not await controller.stand_down():
                keep.append(name)
        return keep

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for controller in self.controllers.values():
            await controller.close()
        await self.replica.close()
