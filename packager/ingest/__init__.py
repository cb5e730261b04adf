"""Broadcaster ingest: an asyncio RTMP server handing each publish out as FLV bytes, and a pipe to PyAV.

``RtmpServer`` accepts many publishers on one port and calls the caller's
``Authorizer`` and ``PublishHandler``; each ``PublishSession`` reads as an FLV
byte stream. ``ByteQueue`` carries those bytes to a blocking reader thread,
where ``av.open(queue, format="flv")`` decodes them live.
"""

from packager.ingest.amf import AmfDate, AmfError, AmfValue, EcmaArray, Undefined
from packager.ingest.pipe import ByteQueue, ByteQueueClosed
from packager.ingest.rtmp import (
    PUBLISH_BADNAME,
    PUBLISH_START,
    PUBLISH_UNAUTHORIZED,
    Authorizer,
    ChunkError,
    ChunkParser,
    Decision,
    FlvWriter,
    PublishHandler,
    PublishSession,
    PublishTarget,
    RtmpMessage,
    RtmpProtocolError,
    RtmpServer,
    encode_message,
    parse_publish_target,
)

__all__ = [
    "PUBLISH_BADNAME",
    "PUBLISH_START",
    "PUBLISH_UNAUTHORIZED",
    "AmfDate",
    "AmfError",
    "AmfValue",
    "Authorizer",
    "ByteQueue",
    "ByteQueueClosed",
    "ChunkError",
    "ChunkParser",
    "Decision",
    "EcmaArray",
    "FlvWriter",
    "PublishHandler",
    "PublishSession",
    "PublishTarget",
    "RtmpMessage",
    "RtmpProtocolError",
    "RtmpServer",
    "Undefined",
    "encode_message",
    "parse_publish_target",
]
