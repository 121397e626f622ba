import librosa
import numpy as np
import pytest
import torch

from studio.audio import AudioConfig, MelSpectrogram, audio_input, load_audio, prepare_audio, save_audio
from studio.errors import ConfigMismatch, UnsupportedAudio


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


@pytest.mark.parametrize("sr, channels, message", [
    (384000, 1, r"'wide\.wav' has a sample rate of 384000 Hz; accepted: up to 192000 Hz\.$"),
    (22050, 16, r"'wide\.wav' has 16 channels; accepted: up to 8\.$"),
])
def test_rates_and_channel_counts_are_capped_from_the_header(tmp_path, sr, channels, message):
    import soundfile as sf

    sf.write(tmp_path / "wide.wav", np.zeros((2048, channels), np.float32), sr)
    with pytest.raises(UnsupportedAudio, match=message):
        load_audio(tmp_path / "wide.wav", 22050)


def test_decoded_size_is_checked_from_the_header(tmp_path):
    import soundfile as sf

    path = tmp_path / "long.flac"
    sf.write(path, np.zeros((48000 * 20, 8), np.int16), 48000)  # 20 s x 8 channels: 29 MB decoded at 48 kHz
    with pytest.raises(UnsupportedAudio, match=r"8 channels, 48000 Hz, 20\.0 s\) would decode to 29 MB; the limit "
                                               r"is 10 MB"):
        load_audio(path, None, mono=False, max_decoded_mb=10)
    x, sr = load_audio(path, 22050, max_decoded_mb=10)  # downmixed and resampled as decoded: 1.7 MB
    assert sr == 22050 and x.shape == (22050 * 20,)


def test_block_by_block_resampling_matches_resampling_the_whole_clip(tmp_path):
    import torchaudio.functional as AF

    sr = 48000
    t = np.arange(sr * 13) / sr  # several decode blocks, not a multiple of the block size
    x = (0.4 * np.sin(2 * np.pi * 440 * t * (1 + 0.1 * t))).astype(np.float32)
    path = save_audio(tmp_path / "sweep.wav", np.stack([x, -0.5 * x]), sr, subtype="FLOAT")
    y, out_sr = load_audio(path, 22050)
    ref = AF.resample(torch.from_numpy(0.25 * x), sr, 22050).numpy()
    assert out_sr == 22050 and abs(len(y) - len(ref)) <= 1
    n = min(len(y), len(ref))
    # same signal everywhere, block joins included (edges aside: the two resamplers pad differently)
    err = np.abs(y[100:n - 100] - ref[100:n - 100])
    assert err.max() < 2e-3, err.max()


def test_audio_input_takes_a_file_or_an_array_with_its_rate(tmp_path):
    stereo = np.stack([np.sin(np.linspace(0, 400, 44100)), np.zeros(44100)]).astype(np.float32) * 0.5
    path = save_audio(tmp_path / "a.wav", stereo, 44100)
    from_file = audio_input(path, None, 22050, missing_sr="unused")
    from_array = audio_input(stereo, 44100, 22050, missing_sr="unused")
    assert from_file.shape == from_array.shape == (22050,) and np.allclose(from_file, from_array, atol=1e-2)  # 16-bit file, block-wise resampling
    with pytest.raises(ConfigMismatch, match="pass the rate"):
        audio_input(stereo, None, 22050, missing_sr="pass the rate")
