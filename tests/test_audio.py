import librosa
import numpy as np
import pytest
import torch

from studio.audio import AudioConfig, MelSpectrogram, load_audio, prepare_audio, save_audio
from studio.errors import UnsupportedAudio


def test_mel_matches_librosa_and_frame_count(piano_clip):
    cfg = AudioConfig()
    x, sr = load_audio(piano_clip, cfg.sample_rate)
    x = x[: 22050 * 2 + 77]  # not a multiple of the hop
    mel = MelSpectrogram(cfg)(torch.from_numpy(x))
    assert mel.shape == (1, 80, len(x) // cfg.hop_length)
    pad = (cfg.n_fft - cfg.hop_length) // 2
    ref = librosa.feature.melspectrogram(y=np.pad(x, pad, mode="reflect"), sr=sr, n_fft=1024, hop_length=256,
                                         center=False, power=1.0, n_mels=80, fmin=0, fmax=sr / 2)
    ref = np.log10(np.maximum(ref, 1e-5))
    np.testing.assert_allclose(mel[0].numpy(), ref[:, : mel.shape[-1]], atol=2e-3)


def test_load_resamples_downmixes_and_rescales(tmp_path):
    t = np.arange(44100 * 2) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)]).astype(np.float32)
    path = save_audio(tmp_path / "s.wav", stereo * 0.5, 44100)
    x, sr = load_audio(path, 22050)
    assert sr == 22050 and x.ndim == 1 and abs(len(x) - 44100) <= 1
    spec = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spec) * 22050 / len(x) - 440) < 2


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(b"RIFF not really a wave file" * 10), "not a readable audio file"),
])
def test_bad_files_are_refused_with_a_reason(tmp_path, make, message):
    p = tmp_path / "bad.wav"
    make(p)
    with pytest.raises(UnsupportedAudio, match=message):
        load_audio(p)


def test_bad_arrays_are_refused():
    with pytest.raises(UnsupportedAudio, match="NaN"):
        prepare_audio(np.full(4000, np.nan, dtype=np.float32), 22050)
    with pytest.raises(UnsupportedAudio, match="too short"):
        prepare_audio(np.zeros(1, dtype=np.float32), 22050)
    with pytest.raises(UnsupportedAudio, match="no such file"):
        load_audio("/nonexistent/clip.wav")
