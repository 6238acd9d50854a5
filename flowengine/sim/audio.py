"""Real audio files for simulated recordings, built without any audio library.

WAV: 8 kHz, 16-bit, mono PCM — a quiet 400 Hz tone while the caller spoke, digital
silence after. MP3: MPEG-1 Layer III, 32 kHz mono, 32 kbit/s, constant bit rate, every
frame silent (all-zero side information means "no spectral data", which every decoder
plays as silence). Sizes are computed without building the file, so the ``size`` of a
``finished`` record event is known before anyone downloads it.
"""

from __future__ import annotations

import math
import struct

WAV_RATE = 8000
_WAV_HEADER = 44
_TONE_HZ = 400          # 8000 / 400 = 20 samples per period: a seamless loop
_TONE_AMPLITUDE = 1600  # about -26 dBFS: audible, clearly "quiet"

MP3_RATE = 32000
MP3_SAMPLES_PER_FRAME = 1152
MP3_BITRATE = 32000
#: 144 * bitrate / sample rate, no padding needed at 32 kHz.
MP3_FRAME_BYTES = 144 * MP3_BITRATE // MP3_RATE
# Sync 0xFFF, MPEG-1 (11), Layer III (01), no CRC (1) | bitrate index 1 (32 kbit/s),
# 32 kHz (10), no padding, private 0 | mono (11), mode ext 00, not copyrighted, original,
# no emphasis.
_MP3_HEADER = bytes((0xFF, 0xFB, 0x18, 0xC4))
_MP3_FRAME = _MP3_HEADER + bytes(MP3_FRAME_BYTES - len(_MP3_HEADER))

# One second of tone, built once; longer speech repeats it.
_TONE_SECOND = b"".join(
    struct.pack("<h", round(_TONE_AMPLITUDE * math.sin(2 * math.pi * _TONE_HZ * i / WAV_RATE)))
    for i in range(WAV_RATE)
)


def wav_samples(duration: float) -> int:
    """Number of samples in a WAV recording of ``duration`` seconds."""
    return max(0, round(duration * WAV_RATE))


def wav_size(duration: float) -> int:
    """Byte length of :func:`wav_bytes` for that duration."""
    return _WAV_HEADER + 2 * wav_samples(duration)


def wav_bytes(duration: float, spoken: float) -> bytes:
    """A RIFF/WAVE file of ``duration`` seconds, tone for the first ``spoken`` seconds."""
    n = wav_samples(duration)
    tone_samples = min(n, wav_samples(spoken))
    tone_bytes = 2 * tone_samples
    whole, rest = divmod(tone_bytes, len(_TONE_SECOND))
    data = _TONE_SECOND * whole + _TONE_SECOND[:rest] + bytes(2 * (n - tone_samples))
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + len(data), b"WAVE",
        b"fmt ", 16, 1, 1, WAV_RATE, WAV_RATE * 2, 2, 16,
        b"data", len(data),
    )
    return header + data


def mp3_frames(duration: float) -> int:
    """Number of MPEG frames covering ``duration`` seconds (the last one may run over)."""
    if duration <= 0:
        return 0
    return math.ceil(round(duration * MP3_RATE) / MP3_SAMPLES_PER_FRAME)


def mp3_size(duration: float) -> int:
    """Byte length of :func:`mp3_bytes` for that duration."""
    return MP3_FRAME_BYTES * mp3_frames(duration)


def mp3_bytes(duration: float) -> bytes:
    """A decodable, silent, constant-bit-rate MP3 of at least ``duration`` seconds."""
    return _MP3_FRAME * mp3_frames(duration)
