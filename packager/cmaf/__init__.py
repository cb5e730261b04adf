"""ISO-BMFF (CMAF) in pure bytes: init segments, moof+mdat chunks, styp, and a box reader.

Nothing here touches codecs: callers hand in encoded access units already in
MP4 form (see :func:`packager.cmaf.avc.annexb_to_mp4`) and codec configuration
bytes (SPS/PPS, AudioSpecificConfig).
"""

from packager.cmaf import aac, avc
from packager.cmaf.avc import SpsInfo, parse_sps
from packager.cmaf.boxes import box, full_box
from packager.cmaf.fragment import Prft, chunk, styp
from packager.cmaf.init import audio_init, text_init, video_init
from packager.cmaf.reader import Box, FragmentInfo, InitInfo, find, iter_boxes, parse_fragments, parse_init

__all__ = [
    "Box",
    "FragmentInfo",
    "InitInfo",
    "Prft",
    "SpsInfo",
    "aac",
    "audio_init",
    "avc",
    "box",
    "chunk",
    "find",
    "full_box",
    "iter_boxes",
    "parse_fragments",
    "parse_init",
    "parse_sps",
    "styp",
    "text_init",
    "video_init",
]
