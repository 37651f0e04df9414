"""Times as an operator gives and reads them (DESIGN: rate windows, profiles and daily
limits live in the client's zone).

``explain --at``: a time without an offset is a wall-clock time in the zone of the client
the call identifies as (UTC when the call has no client); an offset is always honoured.
Either way the output shows the call's time in the client's zone, naming it.

The demo's clients: acme-north (Europe/Madrid: +01:00 in winter, +02:00 in summer),
thames (Europe/London), hudson-dental (America/New_York: -05:00 in winter).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AtCase:
    name: str
    endpoint: str
    to: str
    at: str
    """What the operator types after ``--at``."""
    instant: str
    """The instant the pipeline judges, as ISO 8601."""
    shown: str
    """How the output names it."""


AT_CASES = [
    AtCase("naive, Madrid in winter", "acme-north-ana", "102", "2026-11-25T10:30:00",
           "2026-11-25T10:30:00+01:00", "2026-11-25 10:30 Europe/Madrid (+01:00)"),
    AtCase("naive, Madrid in summer", "acme-north-ana", "102", "2026-07-01T10:30:00",
           "2026-07-01T10:30:00+02:00", "2026-07-01 10:30 Europe/Madrid (+02:00)"),
    AtCase("naive, London", "thames-george", "02079460123", "2026-11-25T10:30:00",
           "2026-11-25T10:30:00+00:00", "2026-11-25 10:30 Europe/London (+00:00)"),
    AtCase("naive, New York", "hudson-jorge", "10", "2026-11-25T10:30:00",
           "2026-11-25T10:30:00-05:00", "2026-11-25 10:30 America/New_York (-05:00)"),
    AtCase("naive with seconds", "acme-north-ana", "102", "2026-11-25T10:30:15",
           "2026-11-25T10:30:15+01:00", "2026-11-25 10:30:15 Europe/Madrid (+01:00)"),
    AtCase("an offset is honoured and shown in the client's zone", "acme-north-ana", "102",
           "2026-11-25T10:30:00+00:00", "2026-11-25T10:30:00+00:00",
           "2026-11-25 11:30 Europe/Madrid (+01:00)"),
    AtCase("Z is UTC", "hudson-jorge", "10", "2026-11-25T15:00:00Z",
           "2026-11-25T15:00:00+00:00", "2026-11-25 10:00 America/New_York (-05:00)"),
    AtCase("no client: naive is UTC, and said so", "nobody", "102", "2026-11-25T10:30:00",
           "2026-11-25T10:30:00+00:00", "2026-11-25 10:30 UTC (+00:00)"),
]  # fmt: skip
