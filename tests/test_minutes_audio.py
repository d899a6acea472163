"""Audio decode (wav/mp3/m4a/mp4/ogg, stereo, odd sample rates) and rejection of non-audio."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from shared.errors import InvalidInput
from minutes import audio

DATA = Path(__file__).parent / "data" / "minutes"


def make_tone(path: Path, *, codec: str, container: str | None = None, rate: int = 44100,
              seconds: float = 1.5, stereo: bool = True, with_audio: bool = True) -> Path:
    """Write a 440 Hz (left) / 660 Hz (right) tone with PyAV."""
    t = np.arange(int(rate * seconds)) / rate
    left = 0.3 * np.sin(2 * np.pi * 440 * t)
    right = 0.3 * np.sin(2 * np.pi * 660 * t)
    data = np.stack([left, right]) if stereo else left[None, :]
    with av.open(str(path), "w", format=container) as out:
        if not with_audio:
            v = out.add_stream("mpeg4", rate=10)
            v.width, v.height, v.pix_fmt = 64, 64, "yuv420p"
            for i in range(5):
                frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
                for p in v.encode(frame):
                    out.mux(p)
            for p in v.encode():
                out.mux(p)
            return path
        s = out.add_stream(codec, rate=rate)
        s.layout = "stereo" if stereo else "mono"
        fmt = s.codec_context.codec.audio_formats[0].name if s.codec_context.codec.audio_formats else "s16"
        step = 1024
        for i in range(0, data.shape[1], step):
            chunk = data[:, i:i + step].astype(np.float32)
            frame = _frame(chunk, fmt, stereo, rate)
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def _frame(chunk: np.ndarray, fmt: str, stereo: bool, rate: int):
    layout = "stereo" if stereo else "mono"
    if fmt.endswith("p"):  # planar
        arr = chunk.astype(np.float32 if fmt.startswith("flt") else np.int16)
        if fmt.startswith("s16"):
            arr = (chunk * 32767).astype(np.int16)
        if fmt.startswith("s32"):
            arr = (chunk * 2**31 - 1).astype(np.int32)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt, layout=layout)
    else:
        inter = chunk.T.reshape(1, -1)
        if fmt == "flt":
            arr = inter.astype(np.float32)
        elif fmt == "s32":
            arr = (inter * (2**31 - 1)).astype(np.int32)
        else:
            arr = (inter * 32767).astype(np.int16)
            fmt = "s16"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt, layout=layout)
    frame.sample_rate = rate
    return frame


@pytest.mark.parametrize("name,codec,container,rate", [
    ("tone.wav", "pcm_s16le", None, 44100),
    ("tone.mp3", "libmp3lame", None, 44100),
    ("tone.m4a", "aac", "ipod", 48000),
    ("tone.ogg", "libopus", "ogg", 48000),
    ("tone.flac", "flac", None, 22050),
])
def test_decode_any_container_stereo_to_16k_mono(tmp_path, name, codec, container, rate):
    path = make_tone(tmp_path / name, codec=codec, container=container, rate=rate)
    info = audio.probe(path)
    assert info.duration_s is None or abs(info.duration_s - 1.5) < 0.2
    a = audio.decode(path)
    assert a.dtype == np.float32 and a.ndim == 1
    assert abs(audio.duration_of(a) - 1.5) < 0.15  # resampled to 16 kHz
    # a real tone survived: energy present and dominant frequency ~ mean of 440/660 mix
    assert 0.05 < float(np.sqrt(np.mean(a ** 2))) < 0.5
    spec = np.abs(np.fft.rfft(a[:16000]))
    peak_hz = np.argmax(spec) * 16000 / 16000
    assert 400 <= peak_hz <= 700


def test_decode_wrong_extension_is_judged_by_content(tmp_path):
    path = make_tone(tmp_path / "tone.wav", codec="pcm_s16le")
    disguised = path.rename(tmp_path / "recording.docx")
    assert audio.duration_of(audio.decode(disguised)) > 1.0


@pytest.mark.parametrize("fixture", ["short_meeting.mp3", "short_meeting.m4a"])
def test_decode_speech_fixtures(fixture):
    a = audio.decode(DATA / fixture)
    assert abs(audio.duration_of(a) - 43.8) < 0.3


def test_vad_pieces_in_parallel_give_the_same_regions():
    """detect_speech runs its pieces in threads: the regions are those of one piece after another
    (here a 43.8 s meeting cut into 10 s pieces, so regions meet at piece boundaries too)."""
    from minutes.vad import detect_speech

    a = audio.decode(DATA / "short_meeting.mp3")
    one = detect_speech(a, chunk_s=10.0, workers=1)
    assert len(one) >= 5 and all(x.end <= y.start for x, y in zip(one, one[1:]))
    assert detect_speech(a, chunk_s=10.0, workers=2) == one
    # the whole file at once finds about the same speech
    whole = detect_speech(a)
    assert abs(sum(r.end - r.start for r in whole) - sum(r.end - r.start for r in one)) < 2.0


@pytest.mark.parametrize("content", [
    b"",
    "会議の議事録です。これは音声ではありません。".encode("utf-8") * 50,
    b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + bytes(range(256)) * 40,
    b"\x89PNG\r\n\x1a\n" + b"\x00" * 4000,
])
def test_non_audio_is_rejected_with_japanese_message(tmp_path, content):
    path = tmp_path / "upload.mp3"
    path.write_bytes(content)
    with pytest.raises(InvalidInput) as exc:
        audio.probe(path)
    assert "音声" in exc.value.message and exc.value.status == 422
    with pytest.raises(InvalidInput):
        audio.decode(path)


def test_video_without_sound_is_rejected(tmp_path):
    path = make_tone(tmp_path / "silent.mp4", codec="", with_audio=False)
    with pytest.raises(InvalidInput) as exc:
        audio.probe(path)
    assert exc.value.message == audio.NO_SOUND_MESSAGE
