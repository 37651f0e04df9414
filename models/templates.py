"""Which notification template text a client's e-mail uses (DESIGN §3.10).

The lookup walks three levels, the target language first:

1. the template the **client** chose for the type (its own, its brand's or a generic one);
2. the template its **brand** chose for the type;
3. the **generic** templates of the type (no owner), in name order.

A level whose template has no content in the language falls through to the next
level: a Spanish client whose own template is English-only gets its brand's Spanish
text before anyone's English. A regional language (``en-GB``) also accepts its base
language (``en``) at the same level. When no level has the language, the same walk
is repeated in :data:`FALLBACK_LANGUAGE`, so a brand's English text (with the brand's
sender) is preferred to the platform's. No text at all: ``None``.

Only choices count: a template a client or brand owns but did not choose is not used.
A chosen template is used only when it is of the requested type and belongs to the
client, to the client's brand or to nobody (a row written by another tool cannot hand
one tenant's text to another).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import and_, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from models.platform import (
    BrandNotificationTemplate,
    ClientNotificationTemplate,
    NotificationTemplate,
    NotificationTemplateContent,
)
from models.tenants import Brand, Client
from models.vocabulary import TEMPLATE_TYPES

FALLBACK_LANGUAGE = "en"
"""The language every level is searched in again when none has the target language."""

Level = Literal["client", "brand", "generic"]


@dataclass(frozen=True, slots=True)
class TemplateText:
    """One template's content in one language, and where the lookup found it."""

    level: Level
    """Whose choice it is: the client's, its brand's, or the platform's generic template."""
    template_id: int
    template_name: str
    kind: str
    """The template type, e.g. ``max_daily_usage``."""
    language: str
    """The language of this content."""
    requested_language: str
    from_name: str
    from_address: str
    subject: str
    body: str
    body_type: Literal["text", "html"]

    @property
    def fallback(self) -> bool:
        """True when the content is not in the requested language."""
        return self.language != self.requested_language

    def describe(self) -> str:
        """One line for logs and ``explain``, e.g. ``brand's template 'iberia-daily' (es)``."""
        owner = "generic" if self.level == "generic" else f"{self.level}'s"
        wanted = f", wanted {self.requested_language}" if self.fallback else ""
        return f"{owner} template {self.template_name!r} ({self.language}{wanted})"


async def find_template(
    engine: AsyncEngine,
    client_id: int | None,
    kind: str,
    language: str,
    *,
    brand_id: int | None = None,
) -> TemplateText | None:
    """The text the client's ``kind`` e-mail uses in ``language`` (see the module docstring).

    With ``client_id`` None, the e-mail of the brand ``brand_id`` (a brand administrator's):
    its brand's choice, then the generic level. An unknown client or brand only gets the
    generic level. ``kind`` must be a template type.
    """
    if kind not in TEMPLATE_TYPES:
        raise ValueError(f"unknown notification template type {kind!r}")
    async with engine.connect() as connection:
        chosen = (
            await connection.execute(
                select(
                    Client.brand_id,
                    ClientNotificationTemplate.template_id.label("client_choice"),
                    BrandNotificationTemplate.template_id.label("brand_choice"),
                )
                .select_from(Client)
                .outerjoin(
                    ClientNotificationTemplate,
                    and_(
                        ClientNotificationTemplate.client_id == Client.id,
                        ClientNotificationTemplate.type == kind,
                    ),
                )
                .outerjoin(
                    BrandNotificationTemplate,
                    and_(
                        BrandNotificationTemplate.brand_id == Client.brand_id,
                        BrandNotificationTemplate.type == kind,
                    ),
                )
                .where(Client.id == client_id)
            )
        ).first()
        if client_id is None and brand_id is not None:
            chosen = (  # type: ignore[assignment]  # the same columns, no client choice
                await connection.execute(
                    select(
                        Brand.id.label("brand_id"),
                        literal(None).label("client_choice"),
                        BrandNotificationTemplate.template_id.label("brand_choice"),
                    )
                    .select_from(Brand)
                    .outerjoin(
                        BrandNotificationTemplate,
                        and_(
                            BrandNotificationTemplate.brand_id == Brand.id,
                            BrandNotificationTemplate.type == kind,
                        ),
                    )
                    .where(Brand.id == brand_id)
                )
            ).first()
        brand_id = chosen.brand_id if chosen else None
        levels: list[tuple[Level, int]] = []
        if chosen is not None and chosen.client_choice is not None:
            levels.append(("client", chosen.client_choice))
        if chosen is not None and chosen.brand_choice is not None:
            levels.append(("brand", chosen.brand_choice))
        generic = await connection.scalars(
            select(NotificationTemplate.id)
            .where(
                NotificationTemplate.type == kind,
                NotificationTemplate.brand_id.is_(None),
                NotificationTemplate.client_id.is_(None),
            )
            .order_by(NotificationTemplate.name, NotificationTemplate.id)
        )
        levels.extend(("generic", template_id) for template_id in generic)
        if not levels:
            return None

        wanted = _languages(language)
        rows = await connection.execute(
            select(
                NotificationTemplate.id,
                NotificationTemplate.name,
                NotificationTemplateContent.language,
                NotificationTemplateContent.from_name,
                NotificationTemplateContent.from_address,
                NotificationTemplateContent.subject,
                NotificationTemplateContent.body,
                NotificationTemplateContent.body_type,
            )
            .join(
                NotificationTemplateContent,
                NotificationTemplateContent.template_id == NotificationTemplate.id,
            )
            .where(
                NotificationTemplate.id.in_({template_id for _, template_id in levels}),
                NotificationTemplate.type == kind,
                NotificationTemplateContent.language.in_([*wanted, FALLBACK_LANGUAGE]),
                or_(
                    # -1: no client's template for a brand's e-mail (None would read IS NULL)
                    NotificationTemplate.client_id == (-1 if client_id is None else client_id),
                    and_(
                        NotificationTemplate.brand_id == brand_id,
                        NotificationTemplate.client_id.is_(None),
                    ),
                    and_(
                        NotificationTemplate.brand_id.is_(None),
                        NotificationTemplate.client_id.is_(None),
                    ),
                ),
            )
        )
        contents = {(row.id, row.language): row for row in rows}

    for languages in (wanted, (FALLBACK_LANGUAGE,)):
        for level, template_id in levels:
            for candidate in languages:
                row = contents.get((template_id, candidate))
                if row is not None:
                    return TemplateText(
                        level=level,
                        template_id=row.id,
                        template_name=row.name,
                        kind=kind,
                        language=row.language,
                        requested_language=language,
                        from_name=row.from_name,
                        from_address=row.from_address,
                        subject=row.subject,
                        body=row.body,
                        body_type="html" if row.body_type == "html" else "text",
                    )
    return None


def _languages(language: str) -> tuple[str, ...]:
    """``language`` then its base language: ``en-GB`` → (``en-GB``, ``en``)."""
    base = language.split("-", 1)[0]
    return (language,) if base == language else (language, base)
