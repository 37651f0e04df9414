"""Which language a refused caller hears, and how a DDI's ``language`` changes it, one row
per rule a reader can check (DESIGN §3: the caller hears the locution in the caller's
language; a carrier's caller to a DDI hears the DDI's language when it has one).

The world (tests/world.py): acme-madrid speaks ``es`` and has voice notifications; its user
alice speaks ``en`` and has extension 101 and DDI ``+34910000001``; bob (102) has no
language of his own; eve (103) has no terminal. A carrier calls a DDI of the row; that DDI
has the row's ``ddi_language`` (None: not set) and routes to ``target``. ``full`` takes
every slot of the client's ``max_calls`` (1), so an external call is refused with
``max_calls_reached`` (busy for an inbound call). Terminal rows are alice or bob calling
out; the client's outgoing DDI, which they present, then has the row's ``ddi_language``.
"""

from __future__ import annotations

from typing import NamedTuple

from dialplan.reasons import Reason

BUSY = Reason.MAX_CALLS_REACHED
UNREACHABLE = Reason.DESTINATION_UNREACHABLE
DENIED = Reason.NOT_ALLOWED


class LanguageCase(NamedTuple):
    name: str
    caller: str
    """``carrier`` (calls the DDI), or the terminal calling out (``t-alice``, ``t-bob``)."""
    ddi_language: str | None
    """The language of the DDI called (inbound) or presented (outbound)."""
    target: str
    """Who the DDI rings: ``alice``, ``bob`` or ``eve`` (no terminal); for a terminal
    row, the number it dials."""
    full: bool
    reason: Reason
    language: str
    """The language of the locution the caller hears."""
    sip: int


CASES: tuple[LanguageCase, ...] = (
    LanguageCase("inbound busy: the DDI's language",
                 "carrier", "fr", "alice", True, BUSY, "fr", 486),
    LanguageCase("inbound busy, the DDI has no language: the client's, not the callee's",
                 "carrier", None, "alice", True, BUSY, "es", 486),
    LanguageCase("inbound to a user without a terminal: the DDI's language",
                 "carrier", "en", "eve", False, UNREACHABLE, "en", 503),
    LanguageCase("inbound to a user without a terminal, no DDI language: the client's",
                 "carrier", None, "eve", False, UNREACHABLE, "es", 503),
    LanguageCase("outbound busy: the caller's own language, not the presented DDI's",
                 "t-alice", "fr", "600123123", True, BUSY, "en", 403),
    LanguageCase("outbound busy, the caller has no language: the client's, not the DDI's",
                 "t-bob", "fr", "600123123", True, BUSY, "es", 403),
    LanguageCase("outbound denied by the caller's ACL: the caller's language",
                 "t-alice", "fr", "905123456", False, DENIED, "en", 403),
)  # fmt: skip
