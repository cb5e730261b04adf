"""A push's declared picture size, read from its first bytes: TS and FLV, and refusal before any decoder runs."""

from __future__ import annotations

import random
import threading

import pytest

from fixtures.media import make_clip
from packager.admission import InputLimits
from packager.ingest.pipe import ByteQueue
from packager.prescan import declared_size
from packager.sources.media import InputOverLimit, MediaSource

pytestmark = pytest.mark.media


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("prescan")
    out = {}
    for fmt, suffix in (("mpegts", ".ts"), ("flv", ".flv")):
        out[fmt] = make_clip(d / f"c{suffix}", seconds=1, width=320, height=180).read_bytes()
    out["audio-ts"] = make_clip(d / "a.ts", seconds=1, video=False).read_bytes()
    out["mp4"] = make_clip(d / "c.mp4", seconds=1).read_bytes()
    return out


@pytest.mark.parametrize("fmt", ["mpegts", "flv"])
def test_the_sps_in_the_first_bytes_gives_the_size(clips, fmt) -> None:
    assert declared_size(fmt, clips[fmt][: 256 * 1024]) == (320, 180)


def test_no_sps_no_size(clips) -> None:
    assert declared_size("mpegts", clips["audio-ts"]) is None
    assert declared_size("mov", clips["mp4"]) is None  # its header declares the streams: the probe reads it
    assert declared_size("mpegts", clips["mpegts"][:376]) is None  # not yet there


def test_a_cut_off_sps_is_not_read(clips) -> None:
    data = clips["mpegts"]
    for end in range(188, 4 * 188, 188):  # whole packets, the SPS possibly cut by the end of the buffer
        size = declared_size("mpegts", data[:end])
        assert size in (None, (320, 180))


def test_garbage_never_raises() -> None:
    rng = random.Random(7)
    for _ in range(300):
        blob = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 3000)))
        for fmt in ("mpegts", "flv"):
            declared_size(fmt, blob)
            declared_size(fmt, b"FLV\x01\x05\x00\x00\x00\x09" + blob)
            declared_size(fmt, (b"\x47\x41\x00\x10\x00\x00\x01\xe0" + blob)[:188] * 3)


@pytest.mark.parametrize("fmt", ["mpegts", "flv"])
def test_a_push_over_the_limits_is_refused_before_it_is_decoded(clips, fmt) -> None:
    queue = ByteQueue()
    source = MediaSource(
        f"http://{fmt}", reader=queue, format=fmt, paced=False, live=True, limits=InputLimits(max_width=256)
    )
    data = clips[fmt]

    def feed() -> None:  # the writer side, as the loop would: in pieces, then the end
        import asyncio

        async def put_all() -> None:
            for i in range(0, len(data), 4096):
                await queue.put(data[i : i + 4096])
            queue.close()

        asyncio.run(put_all())

    writer = threading.Thread(target=feed)
    writer.start()
    with pytest.raises(InputOverLimit, match=r"320x180 is over the limit.*declared by its SPS"):
        source.probe()
    queue.abort()
    writer.join(5)


def test_a_push_within_the_limits_probes_as_before(clips) -> None:
    queue = ByteQueue()
    source = MediaSource("http://ts", reader=queue, format="mpegts", paced=False, live=True, limits=InputLimits())
    import asyncio

    async def fill() -> None:
        await queue.put(clips["mpegts"])
        queue.close()

    asyncio.run(fill())
    info = source.probe()
    assert (info.width, info.height) == (320, 180)
    source.close()
