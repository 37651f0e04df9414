"""The voice-notification catalogue: reason → sound name → text per language.

Audio files and their build/install commands come with the voice notifications
work; the catalogue is what both the audio and ``explain`` are made from.
"""

from locutions.catalogue import CATALOGUE, FALLBACK_LANGUAGE, Locution, locution

__all__ = ["CATALOGUE", "FALLBACK_LANGUAGE", "Locution", "locution"]
