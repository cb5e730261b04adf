"""Chunking: numbers from time, parts close on the boundary, IDR-led segments, gaps."""

from fractions import Fraction

from packager.chunker import TrackChunker
from packager.cmaf import parse_fragments
from packager.model import Sample, TrackInfo

VIDEO = TrackInfo("v", "video", "avc1.42c01e", 90_000, 1_000_000, 320, 180, Fraction(30))
AUDIO = TrackInfo("a", "audio", "mp4a.40.2", 48_000, 128_000, sample_rate=48_000, channels=2)
SEG, PART = 180_000, 45_000  # 2 s, 0.5 s at 90 kHz


def collect(info=VIDEO, seg=SEG, part=PART):
    out = []
    c = TrackChunker(info, segment_ticks=seg, part_ticks=part, sink=lambda p, last, disc: out.append((p, last, disc)))
    return c, out


def video_samples(start_frame, count, key_every=60):
    for n in range(start_frame, start_frame + count):
        t = n * 3000
        yield Sample(
            b"\x00\x00\x00\x01\x65" + bytes([n % 256]), t, t, 3000, n % key_every == 0, capture_utc_s=t / 90000
        )


def test_numbers_are_functions_of_time():
    c, out = collect()
    base = 900_000_000 * 60  # a UTC-like frame number, on a segment boundary
    for s in video_samples(base, 120):
        c.push(s)
    assert [(p.msn, p.index) for p, _, _ in out] == [(900_000_000 + i // 4, i % 4) for i in range(8)]
    assert [last for _, last, _ in out] == [False, False, False, True] * 2
    assert all(p.duration == PART for p, _, _ in out)
    assert [p.independent for p, _, _ in out] == [True, False, False, False] * 2


def test_part_published_on_its_last_sample_not_the_next():
    c, out = collect()
    for s in video_samples(0, 15):
        c.push(s)
    assert len(out) == 1 and out[0][0].duration == PART


def test_part_bytes_are_a_valid_chunk_with_tfdt_and_prft():
    c, out = collect()
    for s in video_samples(60 * 1000, 15):
        c.push(s)
    frags = parse_fragments(out[0][0].data)
    assert len(frags) == 1
    f = frags[0]
    assert f.base_decode_time == 60 * 1000 * 3000
    assert list(f.sample_durations) == [3000] * 15
    assert f.prft is not None and f.prft.media_time == 60 * 1000 * 3000


def test_first_segment_may_be_partial_and_starts_on_idr():
    c, out = collect()
    # stream starts mid-segment: frame 75 is part 1 of segment 1 (frames 60..119); key on 75
    for s in video_samples(75, 60, key_every=15):
        c.push(s)
    assert (out[0][0].msn, out[0][0].index) == (1, 1)
    assert out[0][0].start == 75 * 3000


def test_non_idr_segment_start_is_dropped_until_keyframe():
    c, out = collect()
    samples = list(video_samples(10, 80))  # starts with a non-key frame; key at 60
    for s in samples:
        c.push(s)
    assert out[0][0].msn == 1 and out[0][0].start == 60 * 3000
    assert c.dropped == 50


def test_gap_closes_the_part_and_resumes_on_new_numbers():
    c, out = collect()
    for s in video_samples(0, 20):
        c.push(s)
    for s in video_samples(600, 30, key_every=60):  # 20 s later
        c.push(s)
    msns = [(p.msn, p.index) for p, _, _ in out]
    assert (0, 1) in msns and (10, 0) in msns
    closed = [last for p, last, _ in out if (p.msn, p.index) == (0, 1)]
    assert closed == [True]


def test_audio_parts_close_on_the_frame_crossing_the_boundary():
    c, out = collect(AUDIO, 96_000, 24_000)
    t = 0
    while t < 96_000 * 2:
        c.push(Sample(b"aac", t, t, 1024, True))
        t += 1024
    c.flush()
    for p, _, _ in out:
        assert p.start >= p.msn * 96_000 + p.index * 24_000
        assert p.start - (p.msn * 96_000 + p.index * 24_000) < 1024
    assert all(p.independent for p, _, _ in out)


def test_backwards_time_into_published_media_is_dropped():
    c, out = collect()
    for s in video_samples(0, 30):
        c.push(s)
    published = len(out)
    for s in video_samples(10, 15):  # time went back into published media
        c.push(s)
    assert c.dropped == 15 and len(out) == published
    assert not any(disc for _p, _last, disc in out)


def test_flush_publishes_remainder_as_segment_end():
    c, out = collect()
    for s in video_samples(0, 20):
        c.push(s)
    c.flush()
    assert out[-1][1] is True and out[-1][0].duration == 5 * 3000
