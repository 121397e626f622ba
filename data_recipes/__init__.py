"""Recipes that build datasets in the studio's one layout (``manifest.csv`` + ``audio/``); see ``studio.data``."""
