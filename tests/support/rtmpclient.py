"""A hand-driven RTMP(S) publisher for the ingest tests: what ffmpeg does, one step at a time."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from cryptography import x509

from packager.ingest import amf
from packager.ingest.rtmp import ChunkParser, RtmpMessage, encode_message


class Client:
    """One publisher connection; ``tls``: the client context for RTMPS (None: plain RTMP)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, scheme: str = "rtmp") -> None:
        self.reader, self.writer = reader, writer
        self.scheme = scheme
        self.parser = ChunkParser()
        self.inbox: list[RtmpMessage] = []

    @classmethod
    async def open(
        cls, port: int, tls: ssl.SSLContext | None = None, *, handshake: bool = True, source: str = "127.0.0.1"
    ) -> Client:
        """Connect from ``source`` (any 127.x.y.z address is this host on Linux: another peer address)."""
        streams = await asyncio.open_connection(
            "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None, local_addr=(source, 0)
        )
        client = cls(*streams, scheme="rtmps" if tls else "rtmp")
        if handshake:
            client.writer.write(b"\x03" + bytes(1536))
            s0s1s2 = await asyncio.wait_for(client.reader.readexactly(1 + 2 * 1536), 5)
            assert s0s1s2[0] == 3 and s0s1s2[1537:] == bytes(1536)  # S2 echoes C1
            client.writer.write(s0s1s2[1:1537])
        return client

    def serial(self) -> int:
        """The serial number of the certificate the server presented (RTMPS)."""
        der = self.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number

    def send(self, csid: int, type_id: int, payload: bytes, stream_id: int = 0, ts: int = 0) -> None:
        self.writer.write(encode_message(csid, type_id, stream_id, ts, payload))

    def command(self, *values: amf.AmfValue, stream_id: int = 0) -> None:
        self.send(3, 20, amf.encode(*values), stream_id)

    def media(self, payload: bytes, ts: int) -> None:
        """A video message on stream 1 in 4096-byte chunks."""
        self.writer.write(encode_message(6, 9, 1, ts, payload, 4096))

    async def message(self, match: Callable[[RtmpMessage], bool]) -> RtmpMessage:
        while True:
            for i, msg in enumerate(self.inbox):
                if match(msg):
                    return self.inbox.pop(i)
            data = await asyncio.wait_for(self.reader.read(65536), 5)
            assert data, "connection closed while waiting for a reply"
            self.inbox += self.parser.feed(data)

    async def reply(self, name: str, txid: float | None = None) -> list[amf.AmfValue]:
        def match(msg: RtmpMessage) -> bool:
            if msg.type_id != 20:
                return False
            values = amf.decode(msg.payload)
            return values[0] == name and (txid is None or values[1] == txid)

        return amf.decode((await self.message(match)).payload)

    async def publish(self, app: str, name: str) -> list[amf.AmfValue]:
        """connect, releaseStream, FCPublish, createStream, publish: the onStatus values."""
        tc_url = f"{self.scheme}://localhost/{app}"
        self.command("connect", 1, {"app": app, "tcUrl": tc_url, "type": "nonprivate"})
        result = await self.reply("_result", 1)
        assert result[3]["code"] == "NetConnection.Connect.Success"  # type: ignore[index]
        self.command("releaseStream", 2, None, name)
        self.command("FCPublish", 3, None, name)
        self.command("createStream", 4, None)
        assert (await self.reply("_result", 4))[1:] == [4.0, None, 1.0]
        self.command("publish", 5, None, name, "live", stream_id=1)
        return await self.reply("onStatus")

    async def closed_by_server(self, timeout: float = 3.0) -> bool:
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except ConnectionError:
            pass
        self.writer.close()
        return True
