"""Copy trained runs into models/ as shipped models: fp16 safetensors + config (cards are written by hand from
`studio eval` output; the config's `training` record is kept, edit it with the card).
Usage: python scripts/ship_models.py --vocoder RUN --translator RUN --generator RUN --transcriber RUN --data DATA
(--transcriber: its decoding thresholds are tuned on DATA's valid split, studio.evaluate.tune_thresholds)"""

import argparse
import json
from contextlib import contextmanager
from pathlib import Path

from studio.generation.pipeline import Generator
from studio.registry import DEFAULTS, models_dir
from studio.translation.pipeline import load_translator_model, save_translator
from studio.vocoder import Vocoder


@contextmanager
def keep_training_record(folder: Path):
    """Saving a model rewrites its config.json: carry the hand-written ``training`` record over."""
    cfg = folder / "config.json"
    record = json.loads(cfg.read_text()).get("training") if cfg.is_file() else None
    yield
    if record:
        d = json.loads(cfg.read_text())
        d["training"] = record
        cfg.write_text(json.dumps(d, indent=2) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--vocoder", type=Path, help="a vocoder run folder (its export/ is shipped)")
    p.add_argument("--translator", type=Path, help="a translator run folder (its export/) or a model folder (RUN/best)")
    p.add_argument("--generator", type=Path,
                   help="a prior run folder (its export/ holds VQ-VAE + prior) or a model folder (e.g. RUN/best)")
    p.add_argument("--transcriber", type=Path, help="a transcriber run folder (its export/) or a model folder")
    p.add_argument("--data", type=Path, help="with --transcriber: the rendered dataset to tune its thresholds on")
    a = p.parse_args()
    out = models_dir()
    if a.vocoder:  # weight norm kept (fine-tunable); folded on load
        with keep_training_record(out / DEFAULTS["vocoder"]):
            Vocoder.from_pretrained(a.vocoder / "export", fold=False).save_pretrained(out / DEFAULTS["vocoder"], half=True)
    if a.translator:
        src = a.translator / "export" if (a.translator / "export").is_dir() else a.translator
        with keep_training_record(out / DEFAULTS["translator"]):
            save_translator(load_translator_model(src)[0], out / DEFAULTS["translator"], half=True)
    if a.generator:
        from studio.generation.pipeline import save_generator

        src = a.generator / "export" if (a.generator / "export").is_dir() else a.generator
        g = Generator.from_pretrained(src, vocoder=Vocoder())
        with keep_training_record(out / DEFAULTS["generator"]):
            save_generator(g.vqvae, g.prior, out / DEFAULTS["generator"], half=True)
    if a.transcriber:
        from studio.evaluate import tune_thresholds
        from studio.transcription.pipeline import LearnedTranscriber, save_transcriber

        if not a.data:
            p.error("--transcriber needs --data (its thresholds are tuned on the valid split)")
        src = a.transcriber / "export" if (a.transcriber / "export").is_dir() else a.transcriber
        t = LearnedTranscriber.from_pretrained(src)
        best, rows = tune_thresholds(t, a.data)
        for r in rows:
            print(r)
        print("thresholds:", best)
        with keep_training_record(out / DEFAULTS["transcriber"]):
            save_transcriber(t.model, out / DEFAULTS["transcriber"], half=True, thresholds=best)
    for d in sorted(out.iterdir()):
        if d.is_dir():
            print(d.name, sum(f.stat().st_size for f in d.iterdir()) / 1e6, "MB")


if __name__ == "__main__":
    main()
