"""Audio input: check that a file is decodable audio, and decode it to 16 kHz mono float32.

Decoding goes through PyAV (bundled FFmpeg) via ``faster_whisper.decode_audio``, so any container
and codec FFmpeg knows works (wav, mp3, m4a/aac, mp4/mov video, ogg/opus, flac, wma ...), at any
sample rate, stereo or mono (down-mixed). The type of an upload is checked by decoding, never by
its extension.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.errors import InvalidInput

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000

NOT_AUDIO_MESSAGE = ("音声ファイルとして読み込めませんでした。録音ファイル（mp3・m4a・wav・mp4 など）を"
                     "選んでください。")
NO_SOUND_MESSAGE = "ファイルに音声が含まれていません。録音ファイルを確認してください。"


@dataclass(frozen=True)
class AudioInfo:
    duration_s: float | None  # None when the container does not say
    container: str
    codec: str
    sample_rate: int
    channels: int


def _open(path: Path | str):
    import av  # noqa: PLC0415

    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(NOT_AUDIO_MESSAGE, log_message=f"av.open failed: {type(exc).__name__}") from exc


def probe(path: Path | str) -> AudioInfo:
    """Check that ``path`` holds decodable audio; raise :class:`InvalidInput` (Japanese) if not.

    Opens the container, requires an audio stream and decodes its first frames.
    """
    import av  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise InvalidInput("ファイルが見つかりません。", log_message="probe: no such file")
    if path.stat().st_size == 0:
        raise InvalidInput(NOT_AUDIO_MESSAGE, log_message="probe: empty file")
    with _open(path) as container:
        streams = container.streams.audio
        if not streams:
            raise InvalidInput(NO_SOUND_MESSAGE, log_message="probe: no audio stream")
        stream = streams[0]
        got_frame = False
        try:
            for frame in container.decode(stream):
                if frame.samples > 0:
                    got_frame = True
                    break
        except (av.FFmpegError, ValueError) as exc:
            raise InvalidInput(NOT_AUDIO_MESSAGE, log_message=f"probe decode: {type(exc).__name__}") from exc
        if not got_frame:
            raise InvalidInput(NO_SOUND_MESSAGE, log_message="probe: no decodable audio frame")
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        ctx = stream.codec_context
        return AudioInfo(
            duration_s=duration,
            container=container.format.name,
            codec=ctx.name,
            sample_rate=int(ctx.sample_rate or 0),
            channels=int(getattr(ctx, "channels", 0) or 0),
        )


def decode(path: Path | str) -> np.ndarray:
    """Decode the first audio stream to 16 kHz mono float32 in [-1, 1]."""
    import av  # noqa: PLC0415

    from minutes._fw import faster_whisper  # noqa: PLC0415

    fw = faster_whisper()
    path = Path(path)
    if not path.is_file():
        raise InvalidInput("ファイルが見つかりません。", log_message="decode: no such file")
    try:
        audio = fw.decode_audio(str(path), sampling_rate=SAMPLE_RATE)
    except (av.FFmpegError, ValueError, IndexError, StopIteration) as exc:
        # IndexError/StopIteration: container without an audio stream.
        raise InvalidInput(NOT_AUDIO_MESSAGE, log_message=f"decode failed: {type(exc).__name__}") from exc
    if audio.size == 0:
        raise InvalidInput(NO_SOUND_MESSAGE, log_message="decode: zero samples")
    return np.ascontiguousarray(audio, dtype=np.float32)


def duration_of(audio: np.ndarray) -> float:
    return float(audio.shape[0]) / SAMPLE_RATE
