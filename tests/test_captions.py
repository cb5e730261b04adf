"""CEA-608 captions: the A/53 SEI in and out, passed through every rendition frame for frame, and signalled
(HLS CLOSED-CAPTIONS, DASH Accessibility) only when the input carries them."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import av
import m3u8
import pytest
from lxml import etree

from packager.cmaf.avc import annexb_to_mp4
from packager.cmaf.captions import cc_data, sei_nal, with_sei
from packager.manifest.dash import CEA608_SCHEME, render_mpd
from packager.manifest.hls import render_master
from packager.model import StreamView
from tests.support.cea608 import caption_pairs, make_captioned_clip
from tests.support.procs import package
from tests.support.views import make_view
from tests.support.xsd import validate_mpd

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
CAPTIONS = [(1.0, "HELLO CAPTIONS"), (3.0, "SECOND LINE")]


def test_sei_round_trips_and_goes_before_the_first_slice() -> None:
    triplets = bytes([0xFC, 0x00, 0x00, 0xFC, 0x94, 0x20, 0xFD, 0x80, 0x80])  # zeros need escaping
    nal = sei_nal(triplets)
    assert b"\x00\x00\x00" not in nal and nal[0] == 6
    sample = annexb_to_mp4(b"\x00\x00\x00\x01\x09\xf0\x00\x00\x00\x01\x65\x88\x84\x00\x33")
    out = with_sei(sample, nal)
    assert cc_data(out) == triplets
    assert out.index(nal) < out.index(b"\x65\x88")  # SEI precedes the slice
    assert cc_data(sample) == b""
    for bad in (b"", b"\xfc\x00", b"\xfc\x00\x00" * 32):
        with pytest.raises(ValueError):
            sei_nal(bad)


def _with_captions(view: StreamView, language: str) -> StreamView:
    tracks = tuple(
        replace(t, info=replace(t.info, captions=language)) if t.info.kind == "video" else t for t in view.tracks
    )
    return replace(view, tracks=tracks)


def test_hls_signals_closed_captions_or_none() -> None:
    plain = m3u8.loads(render_master(make_view(count=4)))
    assert all(p.stream_info.closed_captions == "NONE" for p in plain.playlists)
    assert not [m for m in plain.media if m.type == "CLOSED-CAPTIONS"]
    text = render_master(_with_captions(make_view(count=4), "en"))
    master = m3u8.loads(text)
    (cc,) = [m for m in master.media if m.type == "CLOSED-CAPTIONS"]
    assert (cc.group_id, cc.instream_id, cc.language, cc.default, cc.autoselect) == ("cc", "CC1", "en", "YES", "YES")
    assert cc.uri is None and "URI=" not in next(line for line in text.splitlines() if "CLOSED-CAPTIONS," in line)
    assert all(p.stream_info.closed_captions == '"cc"' for p in master.playlists)


def test_dash_signals_cea608_accessibility_on_video_only() -> None:
    plain = etree.fromstring(render_mpd(make_view(count=4)))
    assert plain.findall(".//d:Accessibility", NS) == []
    mpd = render_mpd(_with_captions(make_view(count=4), "eng"))
    validate_mpd(mpd)
    root = etree.fromstring(mpd)
    (acc,) = root.findall(".//d:Accessibility", NS)
    assert acc.getparent().get("contentType") == "video"
    assert (acc.get("schemeIdUri"), acc.get("value")) == (CEA608_SCHEME, "CC1=eng")


def _decoded_pairs(folder: Path, rendition: str) -> list[bytes]:
    """Each decoded picture's cc_data, in order, from init + every segment the playlist names."""
    playlist = m3u8.load(str(folder / rendition / "index.m3u8"))
    data = (folder / rendition / "init.mp4").read_bytes()
    data += b"".join((folder / rendition / s.uri).read_bytes() for s in playlist.segments)
    out = []
    with av.open(io.BytesIO(data), format="mp4") as c:
        for frame in c.decode(video=0):
            side = frame.side_data.get(av.sidedata.sidedata.Type.A53_CC)
            out.append(bytes(side) if side is not None else b"")
    return out


@pytest.mark.media
def test_captions_pass_through_every_rendition_frame_for_frame(tmp_path) -> None:
    clip = make_captioned_clip(tmp_path / "cc.ts", CAPTIONS, seconds=5)
    r = package(
        clip, tmp_path / "out", "--ladder", "320x180@300k,256x144@150k", "--preset", "ultrafast", "--cc-language", "en"
    )
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "out" / "demo"
    source = caption_pairs(CAPTIONS, 30, 5)
    for rendition in ("180p", "144p"):
        # a picture the frame-rate conversion repeats carries no captions (its first copy did)
        pairs = [p for p in _decoded_pairs(folder, rendition) if p]
        assert len(pairs) >= len(source) - 2
        assert pairs[: len(source) - 2] == source[: len(source) - 2], rendition  # every pair once, in order
    master = m3u8.load(str(folder / "master.m3u8"))
    assert [m.language for m in master.media if m.type == "CLOSED-CAPTIONS"] == ["en"]
    root = etree.fromstring((folder / "manifest.mpd").read_bytes())
    assert [a.get("value") for a in root.findall(".//d:Accessibility", NS)] == ["CC1=en"]
