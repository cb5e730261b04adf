"""The Redis store: a publisher mirrors its in-memory store into Redis; origins replicate it.

Key layout (prefix ``lp:`` by default, see :class:`~packager.redisstore.keys.Keys`):

``lp:log:{stream}``
    A Redis Stream, one entry per publication (``MediaRetired`` is not sent),
    written only by the node holding the stream's lease, with ids the
    publisher makes (``ms-seq``, strictly increasing). Fields: see
    :mod:`packager.redisstore.codec`; ``p`` names the previous entry's id (a
    replica that sees another id has a gap and resyncs), ``k`` says a snapshot
    was written in the same MULTI/EXEC, ``t=y`` is a sync marker (a heal).
    Trimmed approximately by time (``MINID ~``) to a horizon (60 s).
``lp:snap:{stream}``
    The stream's whole state as JSON (:mod:`packager.redisstore.snapshot`):
    timing, start, expected tracks, per track its info, the window's segments,
    the parts in memory, the pending parts, the preload hint, the
    discontinuity sequence, ended / reason, publish time; and ``id``, the log
    entry it includes last. Written with that entry after each ``SegmentClosed``
    of the stream's first track, at start, at end and on a heal.
``lp:init:{stream}:{track}``, ``lp:seg:{stream}:{track}:{msn}``, ``lp:part:{stream}:{track}:{msn}.{index}``
    Media bytes, expiring after window + deletion grace + a margin (an init's
    expiry is refreshed with each snapshot; an ended stream's media is kept
    as long as it is served as VOD).
``lp:streams``
    HASH stream -> JSON ``{node, epoch, state: live|ended, started, updated}``.
``lp:lease:{stream}`` / ``lp:epoch:{stream}``
    The lease (node id, PX expiry) and the claim counter (:mod:`.registry`).
``lp:ctl``
    A Redis Stream of ``{op: opened|removed, s, node, epoch}``: how replicas
    discover streams without scanning.
``lp:boot``
    A random token set by the first publisher to reach an empty Redis; a
    publisher that finds another token after a reconnect knows the data was
    lost and re-publishes its streams from memory.
"""

from packager.redisstore.publisher import RedisPublisher
from packager.redisstore.registry import Claim, Registry
from packager.redisstore.replica import RedisReplica
from packager.redisstore.target import RedisTarget

__all__ = ["Claim", "RedisPublisher", "RedisReplica", "RedisTarget", "Registry"]
