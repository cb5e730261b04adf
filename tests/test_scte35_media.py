"""In-band SCTE-35 end to end: an MPEG-TS with a cue PID, packaged; the splices land on IDRs in every
rendition, carry their original sections into HLS, DASH and emsg, and a damaged cue harms nothing."""

from __future__ import annotations

import base64
import struct
from fractions import Fraction
from pathlib import Path

import av
import pytest
from lxml import etree
from threefive.crc import crc32
from threefive.encode import mk_splice_insert

from fixtures.media import make_clip
from packager.cmaf import iter_boxes, parse_fragments
from packager.manifest.adbreaks import SCTE35_INBAND_SCHEME
from tests.support.outputs import decode_segments, media_playlists
from tests.support.procs import package
from tests.support.scte35ts import with_cues
from tests.support.xsd import validate_mpd

pytestmark = pytest.mark.media

LADDER = "480x270@500k,320x180@250k"
NS = {"d": "urn:mpeg:dash:schema:mpd:2011", "scte35": "http://www.scte.org/schemas/35/2016"}
SPLICE_S = 5.0  # media seconds of the out (the clip's media clock starts at its first frame)
RETURN_S = 7.0  # its planned return


@pytest.fixture(scope="module")
def packaged(tmp_path_factory) -> tuple[Path, bytes, bytes, str]:
    tmp = tmp_path_factory.mktemp("scte35")
    clip = make_clip(tmp / "clip.ts", seconds=10, width=480, height=270)
    with av.open(str(clip)) as c:
        v = c.streams.video[0]
        t0 = float(v.start_time * v.time_base)  # the muxer's start offset: cue times are on the TS clock
    out_cue = bytes(mk_splice_insert(42, pts=t0 + SPLICE_S, duration=RETURN_S - SPLICE_S, out=True).bites)
    # intact on the TS level (the demuxer drops sections whose CRC fails), refused by the packager:
    # an encrypted section it has no key for
    damaged = bytearray(mk_splice_insert(43, pts=t0 + 6.0, out=True).bites)[:-4]
    damaged[4] |= 0x80
    damaged += crc32(bytes(damaged)).to_bytes(4, "big")
    ts = with_cues(clip.read_bytes(), [(t0 + 2.0, out_cue), (t0 + 3.0, bytes(damaged)), (t0 + 2.5, out_cue)])
    source = tmp / "cues.ts"
    source.write_bytes(ts)
    r = package(source, tmp / "out", "--ladder", LADDER, "--preset", "ultrafast", "--hls-cue-tags")
    assert r.returncode == 0, r.stderr
    return tmp / "out" / "demo", out_cue, bytes(damaged), r.stderr


def _part_at(folder: Path, rendition: str, media_s: float) -> bytes:
    """The bytes of the chunk (from its prft or emsg to its mdat) whose first sample is at ``media_s``."""
    msn = int(media_s // 2)
    data = (folder / rendition / f"{msn}.m4s").read_bytes()
    boxes = list(iter_boxes(data))
    start = 0
    for i, b in enumerate(boxes):
        if b.type in ("prft", "styp"):
            start = boxes[i + 1].offset if b.type == "styp" else b.offset
        if b.type == "mdat":
            chunk = data[start : b.offset + b.size]
            (frag,) = parse_fragments(chunk)
            if frag.base_decode_time == round(media_s * 90_000):
                return chunk
            start = b.offset + b.size
    raise AssertionError(f"no chunk of {rendition} starts at {media_s}")


@pytest.mark.parametrize("rendition", ["270p", "180p"])
def test_the_splice_and_its_return_are_idrs_in_every_rendition(packaged, rendition) -> None:
    folder, section, _, _ = packaged
    for instant in (SPLICE_S, RETURN_S):
        (frag,) = parse_fragments(_part_at(folder, rendition, instant))
        assert frag.sample_flags[0] & 0x00010000 == 0, (rendition, instant)  # a sync sample opens the part
    chunk = _part_at(folder, rendition, SPLICE_S)
    (box,) = [b for b in iter_boxes(chunk) if b.type == "emsg"]
    payload = chunk[box.offset + 8 : box.offset + box.size]
    timescale, time, duration, _ = struct.unpack(">IQII", payload[4:24])
    scheme, value, message = payload[24:].split(b"\0", 2)
    assert (payload[0], scheme.decode(), timescale, time) == (1, SCTE35_INBAND_SCHEME, 90_000, SPLICE_S * 90_000)
    assert value == b"1"  # as the MPD's InbandEventStream@value says
    assert duration == (RETURN_S - SPLICE_S) * 90_000 and message == section
    assert decode_segments(folder, rendition) > 0


def test_every_playlist_carries_the_original_section_once(packaged) -> None:
    folder, section, _, _ = packaged
    for name in media_playlists(folder):
        text = (folder / name / "index.m3u8").read_text()
        ranges = [line for line in text.splitlines() if line.startswith("#EXT-X-DATERANGE")]
        assert len(ranges) == 1, (name, ranges)  # the cue was sent twice: one break
        assert f"SCTE35-OUT=0x{section.hex().upper()}" in ranges[0] and "PLANNED-DURATION=2.0" in ranges[0]
        assert "#EXT-X-CUE-OUT:2.0" in text and "#EXT-X-CUE-IN" in text
        assert "#EXT-X-ENDLIST" in text  # the finished VOD keeps its markers


def test_the_mpd_event_stream_names_the_splice(packaged) -> None:
    folder, section, _, _ = packaged
    mpd = (folder / "manifest.mpd").read_bytes()
    validate_mpd(mpd)
    (event,) = etree.fromstring(mpd).findall(".//d:EventStream/d:Event", NS)
    stream = event.getparent()
    at = Fraction(int(event.get("presentationTime")) - int(stream.get("presentationTimeOffset")), 90_000)
    assert at == Fraction(SPLICE_S) and event.get("duration") == str(int((RETURN_S - SPLICE_S) * 90_000))
    assert base64.b64decode(event.find("scte35:Signal/scte35:Binary", NS).text) == section


def test_a_damaged_cue_is_refused_with_a_reason_and_nothing_else_changes(packaged) -> None:
    folder, _, damaged, stderr = packaged
    assert "SCTE-35 cue refused: encrypted sections are not supported" in stderr
    assert damaged.hex().upper() not in (folder / "270p" / "index.m3u8").read_text()
    assert "Traceback" not in stderr
