"""The catalogue covers every reason in the languages we ship, and falls back to English."""

from __future__ import annotations

from dialplan.reasons import Reason
from locutions import CATALOGUE, locution


def test_every_reason_has_a_locution_in_english_and_spanish() -> None:
    for reason in Reason:
        assert set(CATALOGUE[reason.locution]) >= {"en", "es"}, reason


def test_a_language_we_lack_falls_back_to_english() -> None:
    spoken = locution("not_allowed", "fr")
    assert spoken.language == "en"
    assert spoken.text == CATALOGUE["not_allowed"]["en"]


def test_spanish_is_spoken_in_spanish() -> None:
    assert locution("invalid_number", "es").text.startswith("El número")
