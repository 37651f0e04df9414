"""The kinds of things a client owns that the API serves (:mod:`callcontrol.api.owned`):
where each lives in the client's provisioning document, what names an item, which access
section decides, and which of its fields are secrets.

Two kinds do not map one list of the document onto one list of the API:

- outgoing DDI rules: the document keeps the client's own rule (``outgoing_ddi_rule``,
  evaluated when a user has none, DESIGN §3.6) apart from the further named rules
  (``outgoing_ddi_rules``); the API lists them together, the client's own one marked
  ``"client_rule": true``;
- rating profiles: an item is named by its activation time, the same instant however it is
  written (``…T00:00:00+01:00`` and ``…T23:00:00Z`` of the day before are one profile).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_jsonable_python

from callcontrol.api.access import ClientFacts, Decision, Principal, decide
from models.provisioning.audit import masked_item

CLIENT_RULE = "client_rule"


class OwnedError(Exception):
    """A refused change: ``status`` (404, 409 or 422) and the one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Owned:
    """One kind of thing a client owns: its URL ``path``, the document ``field`` holding
    the list, the ``key`` naming an item (None: the items are plain strings), the access
    ``section``, the ``secrets`` written in clear and the ``digests`` the export keeps;
    ``listing`` False when the collection's list is served elsewhere; ``tag`` groups its
    routes in the OpenAPI description (the path, unless given)."""

    path: str
    field: str
    key: str | None
    section: str
    secrets: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()
    listing: bool = True
    tag: str = ""

    @property
    def name(self) -> str:
        """The item's key as an API answer names it."""
        return self.key or "source"

    def take(self, node: dict[str, Any]) -> list[Any]:
        """The items of this kind in the client's document ``node``, as JSON values."""
        listed: list[Any] = to_jsonable_python(node.get(self.field, []))
        return listed

    def put(self, node: dict[str, Any], listed: list[Any]) -> dict[str, Any]:
        """The document ``node`` holding ``listed`` as its items of this kind."""
        return {**node, self.field: listed}

    def normal(self, key: str) -> str:
        """``key`` as it is compared: two spellings of one key are one item."""
        return key

    def settle(self, listed: list[Any], index: int) -> list[Any]:
        """``listed`` once its item at ``index`` was written (checked, and the others
        adjusted to it when the kind needs it)."""
        return listed


@dataclass(frozen=True, slots=True)
class DdiRules(Owned):
    """The client's own outgoing DDI rule and its further named rules, as one list."""

    def take(self, node: dict[str, Any]) -> list[Any]:
        own = node.get("outgoing_ddi_rule")
        rules = [{**rule, CLIENT_RULE: False} for rule in node.get("outgoing_ddi_rules", [])]
        first = [{**own, CLIENT_RULE: True}] if own else []
        listed: list[Any] = to_jsonable_python(first + rules)
        return listed

    def put(self, node: dict[str, Any], listed: list[Any]) -> dict[str, Any]:
        own = [rule for rule in listed if rule.get(CLIENT_RULE) is True]
        plain = [
            {k: v for k, v in rule.items() if k != CLIENT_RULE}
            for rule in listed
            if rule.get(CLIENT_RULE) is not True
        ]
        merged = {**node, "outgoing_ddi_rules": plain}
        merged.pop("outgoing_ddi_rule", None)
        if own:
            merged["outgoing_ddi_rule"] = {k: v for k, v in own[0].items() if k != CLIENT_RULE}
        return merged

    def settle(self, listed: list[Any], index: int) -> list[Any]:
        """A rule made the client's one takes the mark from the rule that had it."""
        flag = listed[index].get(CLIENT_RULE, False)
        if not isinstance(flag, bool):
            raise OwnedError(422, f"{CLIENT_RULE}: give true or false")
        settled = [{**rule, CLIENT_RULE: False} if flag else rule for rule in listed]
        settled[index] = {**listed[index], CLIENT_RULE: flag}
        return settled


@dataclass(frozen=True, slots=True)
class RatingProfiles(Owned):
    """A client's rating profiles, named by their activation instant."""

    def normal(self, key: str) -> str:
        try:
            moment = datetime.fromisoformat(key)
        except ValueError:
            return key
        if moment.tzinfo is None:
            return key  # no instant: the loader refuses it, naming the field
        return moment.astimezone(UTC).isoformat()


OWNED: dict[str, Owned] = {
    owned.path: owned
    for owned in (
        Owned("terminals", "terminals", "name", "terminals", ("password",), ("ha1",)),
        Owned("extensions", "extensions", "number", "extensions"),
        Owned("ddis", "ddis", "e164", "ddis"),
        # The source filter is a client setting: the "client" section decides.
        Owned("authorized-sources", "authorized_sources", None, "client"),
        # Client admins belong to the client's settings too; see ``manages_admins``.
        Owned("admins", "admins", "username", "client", ("password",), ("password_hash",)),
        Owned("users", "users", "name", "users"),
        # A match list is what call ACL rules test a number against: the ACL section's.
        Owned("match-lists", "match_lists", "name", "call_acls"),
        Owned("call-acls", "call_acls", "name", "call_acls"),
        DdiRules("outgoing-ddi-rules", "outgoing_ddi_rules", "name", "outgoing_ddi_rules"),
        # Billing: listed with each plan group's currency by the app; written by god and
        # brand admins only (:func:`callcontrol.api.access.decide`).
        RatingProfiles(
            "rating-profiles", "rating_profiles", "activation_time", "rating_profiles",
            listing=False, tag="billing",
        ),
    )
}  # fmt: skip
BY_FIELD: dict[str, Owned] = {owned.field: owned for owned in OWNED.values()}


def openapi_tags() -> list[dict[str, str]]:
    """A description of each kind's OpenAPI tag: its key and the access section deciding."""
    return [
        {
            "name": owned.tag or owned.path,
            "description": f"What a client owns: {owned.path}, named by "
            f"{owned.key or 'the network itself'}; access section `{owned.section}`.",
        }
        for owned in OWNED.values()
        if not owned.tag
    ]


ACTION_SECTIONS: dict[str, tuple[str, ...]] = {
    # client.update: its settings (a load's client.provision is read field by field,
    # :func:`readable_fields`)
    "client": ("client",),
    "client.create": ("client",),  # a client created (its settings after)
    "client.delete": ("client",),  # a client removed (its settings before)
    "admin": ("client",),  # a client admin's invitation or password: the client's admins
    "locution": ("client",),  # the client's own audio
    "recording": ("recordings",),
    "call.hangup": ("billable_calls",),
    # A recorded live call: the call's details and the recording's section both.
    "call.record_start": ("billable_calls", "recordings"),
    "call.record_stop": ("billable_calls", "recordings"),
}
"""The sections whose read an audit entry of a client needs, by its action or the action's
first word; an owned item's entry (``terminals.update``...) needs its kind's section."""

FIELD_SECTIONS: dict[str, str] = {
    "outgoing_ddi_rule": "outgoing_ddi_rules",
    "templates": "notification_templates",
}
"""The section of a field of a client's document that is neither an owned kind's list nor
a setting (settings are the ``client`` section's, as the API reads them)."""


def sections_of(action: str) -> tuple[str, ...] | None:
    """The sections an audit entry of ``action`` on a client belongs to; None: unknown."""
    first = action.partition(".")[0]
    found = ACTION_SECTIONS.get(action) or ACTION_SECTIONS.get(first)
    if found is not None:
        return found
    owned = BY_FIELD.get(first)
    return None if owned is None else (owned.section,)


def section_of_field(name: str) -> str:
    """The section of the field ``name`` of a client's document."""
    owned = BY_FIELD.get(name)
    return owned.section if owned is not None else FIELD_SECTIONS.get(name, "client")


def readable(who: Principal, client: ClientFacts, action: str) -> bool:
    """May ``who`` read an audit entry of ``action`` (``call_acls.update``...) on ``client``:
    only who may read every section it belongs to (:data:`ACTION_SECTIONS`); an entry of
    an action no section claims, only god."""
    sections = sections_of(action)
    if sections is None:
        return who.kind == "god" and not who.restricted
    return all(decide(who, client, section, "read") is Decision.ALLOW for section in sections)


def readable_fields(who: Principal, client: ClientFacts, state: dict[str, Any]) -> dict[str, Any]:
    """The fields of a provisioning entry's ``state`` (a client document's changed fields)
    that ``who`` may read: each its section's (:func:`section_of_field`)."""
    return {
        name: value
        for name, value in state.items()
        if decide(who, client, section_of_field(name), "read") is Decision.ALLOW
    }


def public(owned: Owned, item: Any) -> dict[str, Any]:
    """An item as an answer shows it: no secret, no digest."""
    if owned.key is None:
        return {"source": item}
    return {k: v for k, v in item.items() if k not in owned.secrets + owned.digests}


def masked(owned: Owned, item: Any) -> dict[str, Any] | None:
    """An item as the audit trail keeps it: each secret or digest that is set masked."""
    if item is None:
        return None
    if owned.key is None:
        return {"source": item}
    masked_one: dict[str, Any] = masked_item(item, owned.secrets + owned.digests)
    return masked_one


def key_of(owned: Owned, item: Any) -> str:
    """The item's key, normalised (:meth:`Owned.normal`)."""
    return owned.normal(str(item if owned.key is None else item[owned.key]))
