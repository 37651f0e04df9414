"""What the pipeline may ask about the configuration, and nothing more."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from dialplan.ddi import DdiRuleView
from dialplan.rating import RatingProfileView
from dialplan.views import (
    AclView,
    CarrierView,
    ClientView,
    DdiView,
    ExtensionView,
    TerminalView,
)


class Directory(Protocol):
    """Read-only lookups the steps use. Implementations must not write.

    ``models.directory.SqlDirectory`` answers from the shared database; tests use
    ``tests/fakes.py``'s in-memory one built from plain data.
    """

    def scope(self) -> AbstractAsyncContextManager[None]:
        """Around one call's lookups: lets an implementation reuse one connection."""

    async def terminal(self, endpoint: str) -> TerminalView | None:
        """The terminal whose PJSIP endpoint is ``endpoint``, with its client and user."""

    async def carrier(self, endpoint: str) -> CarrierView | None:
        """The carrier whose PJSIP endpoint is ``endpoint``."""

    async def ddi(self, e164: str) -> DdiView | None:
        """The DDI ``e164`` (with '+'), with its client and where it routes."""

    async def extension(self, client: ClientView, number: str) -> ExtensionView | None:
        """The extension ``number`` of ``client``."""

    async def corporation_extension(self, client: ClientView, number: str) -> ExtensionView | None:
        """The extension ``number`` of another client of ``client``'s corporation.

        Provisioning keeps extension numbers unique within a corporation, so there
        is at most one.
        """

    async def call_acl(self, acl_id: int) -> AclView | None:
        """The call ACL ``acl_id`` with its rules in priority order."""

    async def outbound_carrier(self, client: ClientView, e164: str) -> CarrierView | None:
        """The carrier an external call of ``client`` to ``e164`` leaves through.

        The client's own routes before its brand's; longest prefix, then lowest priority.
        """

    async def ddi_rule(self, rule_id: int) -> DdiRuleView | None:
        """The outgoing-DDI rule ``rule_id`` with its patterns (and their match lists)."""

    async def rating_profiles(self, client: ClientView, e164: str) -> tuple[RatingProfileView, ...]:
        """Every rating profile of ``client`` (future ones too), each plan holding only the
        rates whose prefix is a prefix of ``e164``: all that can price a call to it."""

    async def balance(self, client: ClientView) -> Decimal:
        """What a new call of the client may spend now: its balance less what its live
        prepaid calls hold of it (DESIGN §3.5). Never cached: it changes with every call."""

    async def locution_overrides(self, client: ClientView) -> frozenset[tuple[str, str]]:
        """The (sound, language) pairs ``client`` has its own audio for."""

    async def emergency_number(self, client: ClientView, dialled: str) -> bool:
        """Whether ``dialled`` (as the terminal dialled it) is an emergency number of the
        client's country (the platform's list, DESIGN §3.5)."""

    async def active_calls(self, client: ClientView, now: datetime) -> int:
        """The client's concurrent external calls on every server (live slots). Never cached."""

    async def spent(self, client: ClientView, day: date) -> Decimal:
        """The client's external spend on ``day`` (its local day). Never cached."""
