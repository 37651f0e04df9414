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


@dataclass(frozen=True)
class CdrDayCase:
    """``cdr list`` over tests/test_cdrs.py's four CDRs (UTC start times): acme's
    2026-11-24 10:30, 2026-11-25 10:30 and 2026-11-26 10:30; globex's 2026-11-25 23:59, which
    is already 2026-11-26 00:59 in Madrid. Both clients live in Europe/Madrid.

    With ``--client``, ``--since`` / ``--until`` are the client's local days and the start
    times are shown on its clock; without, UTC days and UTC times, said in the header."""

    name: str
    options: tuple[str, ...]
    zone: str
    """What the start column's header names."""
    listed: tuple[str, ...]
    """Start and client of each row listed."""


CDR_DAY_CASES = [
    CdrDayCase("no client: a UTC day", ("--since", "2026-11-25", "--until", "2026-11-25"),
               "UTC", ("2026-11-25 10:30:00 acme", "2026-11-25 23:59:00 globex")),
    CdrDayCase("a client: its local day, late UTC evening is the next day",
               ("--client", "globex", "--since", "2026-11-26", "--until", "2026-11-26"),
               "Europe/Madrid", ("2026-11-26 00:59:00 globex",)),
    CdrDayCase("a client: its local day ends at its midnight",
               ("--client", "globex", "--until", "2026-11-25"), "Europe/Madrid", ()),
    CdrDayCase("a client: times on its clock",
               ("--client", "acme", "--since", "2026-11-25", "--until", "2026-11-25"),
               "Europe/Madrid", ("2026-11-25 11:30:00 acme",)),
    CdrDayCase("no client: the same late call is on its UTC day",
               ("--since", "2026-11-26",), "UTC", ("2026-11-26 10:30:00 acme",)),
]  # fmt: skip


@dataclass(frozen=True)
class ProfileCase:
    """A rating profile's ``activation_time`` loaded for a demo client, and how
    ``provision --export`` writes it: on the client's clock, the same instant (reloading
    the export changes nothing)."""

    name: str
    client: str
    loaded: str
    exported: str


PROFILE_CASES = [
    ProfileCase("Madrid, as written", "acme-north", "2026-01-01T00:00:00+01:00",
                "2026-01-01T00:00:00+01:00"),
    ProfileCase("Madrid, given in UTC: shown on Madrid's clock", "acme-north",
                "2025-12-31T23:00:00+00:00", "2026-01-01T00:00:00+01:00"),
    ProfileCase("Madrid in summer", "acme-north", "2026-07-01T00:00:00+02:00",
                "2026-07-01T00:00:00+02:00"),
    ProfileCase("London in summer, given in UTC", "thames-consulting", "2026-07-01T00:00:00+00:00",
                "2026-07-01T01:00:00+01:00"),
    ProfileCase("New York, given in Madrid's offset", "hudson-dental",
                "2026-01-01T06:00:00+01:00", "2026-01-01T00:00:00-05:00"),
]  # fmt: skip
