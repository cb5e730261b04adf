"""WebVTT in ISO BMFF (ISO/IEC 14496-30): a subtitle segment as one CMAF chunk of ``wvtt`` samples.

The time a segment covers is cut at every cue start and end into samples that
follow each other without a hole: a sample holds one ``vttc`` box (its
``payl`` the cue text) per cue shown all through it or, when none is, an
empty ``vtte``. Every sample is a sync sample. Sample times are the cue times
on the media clock in the track's timescale, so a player places them on its
timeline exactly as it places the video's (DASH: ``Period@start -
presentationTimeOffset`` added to every media time). The init segment is
:func:`packager.cmaf.init.text_init`.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise

from packager.cmaf.boxes import box
from packager.cmaf.fragment import chunk, styp
from packager.model import Sample
from packager.webvtt import Cue, parse_segment

TEXT_TRACK_ID = 1  # one track per file, as for audio and video


def cue_samples(cues: Iterable[Cue], start: int, end: int) -> list[Sample]:
    """The samples covering ``[start, end)`` (cue time units) with the cues shown during each."""
    if end <= start:
        raise ValueError(f"a text segment must end after it starts: {start}..{end}")
    shown = sorted((c for c in cues if c.overlaps(start, end) and c.text), key=lambda c: c.start)
    cuts = sorted({start, end} | {t for c in shown for t in (c.start, c.end) if start < t < end})
    samples = []
    for begin, until in pairwise(cuts):
        boxes = [box(b"vttc", box(b"payl", c.text.encode())) for c in shown if c.start <= begin and c.end >= until]
        samples.append(Sample(b"".join(boxes) or box(b"vtte"), begin, begin, until - begin, True))
    return samples


def wvtt_segment(cues: Iterable[Cue], start: int, end: int, *, sequence_number: int) -> bytes:
    """A whole media segment: ``styp`` and one ``moof`` + ``mdat`` with the cues of ``[start, end)``."""
    samples = cue_samples(cues, start, end)
    return styp() + chunk(sequence_number=sequence_number & 0xFFFFFFFF, track_id=TEXT_TRACK_ID, samples=samples)


def from_webvtt(data: bytes, start: int, end: int, msn: int) -> bytes:
    """The ISO BMFF form of the WebVTT segment file ``data`` (:func:`packager.webvtt.render_segment`) that
    covers ``[start, end)`` as segment ``msn``; ``ValueError`` when ``data`` is not such a file."""
    return wvtt_segment(parse_segment(data).cues, start, end, sequence_number=msn + 1)
