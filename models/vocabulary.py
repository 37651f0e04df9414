"""The closed vocabularies of the schema.

Every value here is also enforced by a CHECK constraint in the database, so a row
written by another tool cannot hold a value the service does not understand.
"""

from __future__ import annotations

FEATURES: tuple[str, ...] = (
    "queues",
    "recordings",
    "faxes",
    "friends",
    "conferences",
    "billing",
    "invoices",
    "voice_notifications",
    "voicemail",
)
"""Client features. A section whose feature is off is unavailable for that client."""

BILLING_METHODS: tuple[str, ...] = ("none", "postpaid", "prepaid", "pseudoprepaid")
DISTRIBUTE_METHODS: tuple[str, ...] = ("hash", "rr", "static")
ON_DEMAND_RECORDING: tuple[str, ...] = ("off", "dtmf", "service_code", "both")
RECORD_CALLS: tuple[str, ...] = ("none", "all", "inbound", "outbound")
EXTENSION_ROUTES: tuple[str, ...] = ("user", "number")
DDI_ROUTES: tuple[str, ...] = ("user", "extension")
ACL_POLICIES: tuple[str, ...] = ("allow", "deny")
DDI_ACTIONS: tuple[str, ...] = ("keep", "force")
DDI_PATTERN_KINDS: tuple[str, ...] = ("prefix", "destination")
MATCH_KINDS: tuple[str, ...] = ("number", "regexp")
CALL_DIRECTIONS: tuple[str, ...] = ("inbound", "outbound")
BODY_TYPES: tuple[str, ...] = ("text", "html")
TEMPLATE_TYPES: tuple[str, ...] = (
    "max_daily_usage",
    "on_demand_record",
    "low_balance",
    "invoice",
    "call_csv",
    "voicemail",
    "fax",
    "access_credentials",
)
ADMIN_SECTIONS: tuple[str, ...] = (
    "users",
    "terminals",
    "extensions",
    "ddis",
    "call_acls",
    "outgoing_ddi_rules",
    "recordings",
    "billable_calls",
    "invoices",
    "rating_profiles",
    "notification_templates",
)
"""Sections of the client portal a client admin can be restricted from."""


def in_list(column: str, values: tuple[str, ...]) -> str:
    """SQL text of a CHECK that ``column`` holds one of ``values``."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


# --- lengths of free text: the columns and the provisioning validators both read these ---

TEXT_LENGTH = 255
"""A description, a subject, a postal address: the default length of a text column."""
NAME_LENGTH = 128
"""A name: of a client, a brand, a user, a list, a template..."""
SHORT_NAME_LENGTH = 64
"""A short name: an application server, a currency, a media relay set."""
DESTINATION_LENGTH = 128
"""A rate's destination ("Spain mobile")."""
TEMPLATE_BODY_LENGTH = 16_000
"""A notification template's body: at four bytes a character, within MariaDB's TEXT."""
