"""The offline render recipe: parallel, non-silent, same notes, different timbre; splits by piece."""

import librosa
import numpy as np
import pytest

from data_recipes._common import assign_splits
from data_recipes.render import RenderConfig, build
from studio.audio import load_audio
from studio.data import SegmentDataset, StepSampler, fixed_clips, read_manifest
from studio.audio import AudioConfig
from studio.errors import DatasetError


def test_renders_are_parallel_same_notes_different_timbre(rendered):
    rows = read_manifest(rendered)
    piece = rows[0].piece
    clips = {e.domain: load_audio(rendered / e.path, 22050)[0] for e in rows if e.piece == piece}
    assert set(clips) == {"piano", "violin", "cello"}
    lengths = [len(x) for x in clips.values()]
    assert max(lengths) - min(lengths) <= 256  # parallel within one hop
    for name, x in clips.items():
        assert np.sqrt(np.mean(x**2)) > 0.01, f"{name} is silent"
    chroma = {k: librosa.feature.chroma_cqt(y=x, sr=22050, hop_length=512) for k, x in clips.items()}
    mfcc = {k: librosa.feature.mfcc(y=x, sr=22050, n_mfcc=20)[1:].mean(axis=1) for k, x in clips.items()}
    names = sorted(clips)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            same_notes = np.corrcoef(chroma[a].ravel(), chroma[b].ravel())[0, 1]
            assert same_notes > 0.5, (a, b, same_notes)
            # the same pair's chroma agrees far more than chroma of this piece vs. a time-reversed copy
            shuffled = np.corrcoef(chroma[a].ravel(), chroma[b][:, ::-1].ravel())[0, 1]
            assert same_notes > shuffled + 0.2, (a, b, same_notes, shuffled)
            envelope_gap = np.linalg.norm(mfcc[a] - mfcc[b])
            assert envelope_gap > 10.0, (a, b, envelope_gap)


def test_manifest_splits_by_piece_without_leaks(rendered):
    rows = read_manifest(rendered)
    split_of = {}
    for e in rows:
        assert split_of.setdefault(e.piece, e.split) == e.split, f"{e.piece} is in two splits"
        assert e.sample_rate == 22050 and e.duration > 1 and e.license
    assert set(split_of.values()) == {"train", "valid", "test"}
    s1 = assign_splits([f"p{i}" for i in range(20)])
    s2 = assign_splits([f"p{i}" for i in range(20)][::-1])
    assert s1 == s2 and sorted(s1.values()).count("test") == 2


def test_dataset_sampling_is_a_function_of_the_index(rendered):
    ds = SegmentDataset(rendered, AudioConfig(), 4096, "train")
    a, b = ds[12345], ds[12345]
    assert a["audio"].shape == (1, 4096) and np.array_equal(a["audio"], b["audio"])
    assert not np.array_equal(ds[1]["audio"], ds[2]["audio"])
    idx = list(StepSampler(4, start_step=3, max_steps=5, rank=1, world_size=2))
    assert idx == list(range(28, 32)) + list(range(36, 40))
    clips = fixed_clips(rendered, AudioConfig(), "valid", max_clips=3, seconds=2.0)
    assert len(clips) == 3 and all(len(c["audio"]) % 256 == 0 for c in clips)


def test_missing_tools_or_bad_options_fail_clearly_and_write_nothing(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(DatasetError, match="SoundFont"):
        build(RenderConfig(out=out, soundfont=str(tmp_path / "none.sf2")), progress=False)
    with pytest.raises(DatasetError, match="unknown instruments"):
        build(RenderConfig(out=out, instruments=("kazoo",)), progress=False)
    with pytest.raises(DatasetError, match="does not exist"):
        build(RenderConfig(out=out, midi_dir=tmp_path / "nope", max_pieces=1), progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(DatasetError, match="no manifest.csv"):
        read_manifest(tmp_path)
