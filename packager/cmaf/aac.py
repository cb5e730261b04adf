"""AAC signalling for MP4: the AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) and codec string.

Only the general-audio object types whose config is the plain
``GASpecificConfig`` with 1024-sample frames are built here (AAC Main, LC, SSR,
LTP): SBR/PS (HE-AAC) need extra signalling this packager does not produce.
"""

from __future__ import annotations

from packager.cmaf.boxes import u16

# samplingFrequencyIndex -> rate (ISO/IEC 14496-3 Table 1.18)
SAMPLE_RATES: tuple[int, ...] = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)
# channel count -> channelConfiguration (Table 1.19); 7.1 is configuration 7
_CHANNEL_CONFIGS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 8: 7}
_GA_OBJECT_TYPES = frozenset({1, 2, 3, 4})
AAC_LC = 2


def audio_specific_config(sample_rate: int, channels: int, object_type: int = AAC_LC) -> bytes:
    """The 2-byte AudioSpecificConfig for a plain AAC stream."""
    if object_type not in _GA_OBJECT_TYPES:
        raise ValueError(f"unsupported AAC object type {object_type} (supported: 1-4)")
    try:
        freq_index = SAMPLE_RATES.index(sample_rate)
    except ValueError:
        raise ValueError(f"unsupported AAC sample rate {sample_rate} Hz") from None
    config = _CHANNEL_CONFIGS.get(channels)
    if config is None:
        raise ValueError(f"unsupported AAC channel count {channels} (supported: 1-6, 8)")
    # objectType(5) samplingFrequencyIndex(4) channelConfiguration(4)
    # GASpecificConfig: frameLengthFlag(1)=0 dependsOnCoreCoder(1)=0 extensionFlag(1)=0
    return u16((object_type << 11) | (freq_index << 7) | (config << 3))


def codec_string(object_type: int = AAC_LC) -> str:
    """The RFC 6381 codec string: ``mp4a.40.<audio object type>`` (0x40 = MPEG-4 Audio)."""
    if not 1 <= object_type <= 95:
        raise ValueError(f"invalid AAC audio object type {object_type}")
    return f"mp4a.40.{object_type}"
