"""What the caller hears for every reason, in every language we ship."""

from __future__ import annotations

from dataclasses import dataclass

FALLBACK_LANGUAGE = "en"

CATALOGUE: dict[str, dict[str, str]] = {
    "no_client": {
        "en": "The number you have called is not in service.",
        "es": "El número al que ha llamado no está en servicio.",
    },
    "ip_not_allowed": {
        "en": "Calls from your location are not allowed.",
        "es": "No se permiten llamadas desde su ubicación.",
    },
    "not_allowed": {
        "en": "You are not allowed to call this number.",
        "es": "No tiene permiso para llamar a este número.",
    },
    "max_calls_reached": {
        "en": "All lines are busy. Please try again later.",
        "es": "Todas las líneas están ocupadas. Inténtelo más tarde.",
    },
    "daily_limit_reached": {
        "en": "The daily call limit has been reached.",
        "es": "Se ha alcanzado el límite diario de llamadas.",
    },
    "no_outgoing_ddi": {
        "en": "This line cannot make external calls.",
        "es": "Esta línea no puede hacer llamadas externas.",
    },
    "cannot_be_billed": {
        "en": "Calls to this destination are not available.",
        "es": "Las llamadas a este destino no están disponibles.",
    },
    "insufficient_balance": {
        "en": "Your balance is not enough to make this call.",
        "es": "Su saldo no es suficiente para realizar esta llamada.",
    },
    "invalid_number": {
        "en": "The number you have dialled is not valid.",
        "es": "El número que ha marcado no es válido.",
    },
    "destination_unreachable": {
        "en": "The destination cannot be reached at the moment.",
        "es": "El destino no está disponible en este momento.",
    },
    "service_unavailable": {
        "en": "The service is temporarily unavailable.",
        "es": "El servicio no está disponible temporalmente.",
    },
    "recording_started": {"en": "Recording started.", "es": "Grabación iniciada."},
    "recording_stopped": {"en": "Recording stopped.", "es": "Grabación detenida."},
}


@dataclass(frozen=True, slots=True)
class Locution:
    sound: str
    """The sound name Asterisk plays (``sound:<language>/<name>``)."""
    language: str
    """The language actually used, after falling back."""
    text: str


def locution(sound: str, language: str) -> Locution:
    """The locution ``sound`` in ``language``, falling back to English when we lack it."""
    texts = CATALOGUE[sound]
    used = language if language in texts else FALLBACK_LANGUAGE
    return Locution(sound, used, texts[used])
