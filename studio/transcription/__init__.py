"""Note transcription learned from the parallel renders' exact notes (audio -> notes), for the translator."""

from .model import TranscriberConfig, TranscriberModel
from .pipeline import LearnedTranscriber, save_transcriber

__all__ = ["LearnedTranscriber", "TranscriberConfig", "TranscriberModel", "save_transcriber"]
