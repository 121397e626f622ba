"""Music domain translation: universal encoder with domain confusion, decoded through the shared vocoder."""

from .model import TranslatorConfig, TranslatorModel
from .pipeline import Translator, save_translator

__all__ = ["Translator", "TranslatorConfig", "TranslatorModel", "save_translator"]
