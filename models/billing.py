"""Rating plans and profiles, and the state that must survive a process:
CDRs (billable calls), daily usage and active-call slots."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    Time,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, children
from models.vocabulary import CALL_DIRECTIONS, DESTINATION_LENGTH, in_list


class RatingPlanGroup(Base):
    """A brand's price list in one currency: a set of rates by destination prefix."""

    __tablename__ = "rating_plan_groups"
    __table_args__ = (UniqueConstraint("brand_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))

    rates: Mapped[list[Rate]] = children(order_by="Rate.id")


class Rate(Base):
    """The price of calls to an E.164 prefix.

    Longest prefix wins; ties go to the higher weight, then to a rate whose time
    window (local ``time_from``..``time_to`` on the ``weekdays`` bitmask, Monday =
    bit 0) contains the call's start. A rate is identified in its group by prefix, time
    window and weight (provisioning's natural key), so rates differing only by weight
    coexist.
    """

    __tablename__ = "rates"
    __table_args__ = (
        CheckConstraint("connection_fee >= 0", name="connection_fee"),
        CheckConstraint("price_per_minute >= 0", name="price_per_minute"),
        CheckConstraint("increment_first > 0", name="increment_first"),
        CheckConstraint("increment_next > 0", name="increment_next"),
        CheckConstraint("weekdays BETWEEN 1 AND 127", name="weekdays"),
        CheckConstraint("(time_from IS NULL) = (time_to IS NULL)", name="time_window"),
        Index("ix_rates_group_prefix", "rating_plan_group_id", "prefix"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    rating_plan_group_id: Mapped[int] = mapped_column(
        ForeignKey("rating_plan_groups.id", ondelete="CASCADE")
    )
    prefix: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(DESTINATION_LENGTH), default="")
    connection_fee: Mapped[Decimal] = mapped_column(default=Decimal(0))
    price_per_minute: Mapped[Decimal]
    increment_first: Mapped[int] = mapped_column(default=1)
    increment_next: Mapped[int] = mapped_column(default=1)
    weight: Mapped[int] = mapped_column(default=0)
    time_from: Mapped[time | None] = mapped_column(Time)
    time_to: Mapped[time | None] = mapped_column(Time)
    weekdays: Mapped[int] = mapped_column(default=127)


class RatingProfile(Base):
    """Links a client to a rating plan group from an activation time on."""

    __tablename__ = "rating_profiles"
    __table_args__ = (UniqueConstraint("client_id", "activation_time"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    rating_plan_group_id: Mapped[int] = mapped_column(
        ForeignKey("rating_plan_groups.id", ondelete="RESTRICT")
    )
    activation_time: Mapped[datetime]


class BillableCall(Base):
    """The CDR of an external call: written exactly once, keyed by call id."""

    __tablename__ = "billable_calls"
    __table_args__ = (
        CheckConstraint(in_list("direction", CALL_DIRECTIONS), name="direction"),
        CheckConstraint("duration >= 0", name="duration"),
        CheckConstraint("billed_seconds >= 0", name="billed_seconds"),
        Index("ix_billable_calls_client_start", "client_id", "start_time"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="RESTRICT"))
    caller: Mapped[str] = mapped_column(String(64))
    callee: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8))
    ddi: Mapped[str | None] = mapped_column(String(16))
    start_time: Mapped[datetime]
    answer_time: Mapped[datetime | None]
    end_time: Mapped[datetime]
    duration: Mapped[int] = mapped_column(default=0)
    billed_seconds: Mapped[int] = mapped_column(default=0)
    price: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    rating_plan: Mapped[str | None] = mapped_column(String(128))
    matched_prefix: Mapped[str | None] = mapped_column(String(16))
    hangup_cause: Mapped[str] = mapped_column(String(32))
    outcome_reason: Mapped[str | None] = mapped_column(String(32))
    server: Mapped[str | None] = mapped_column(String(64))
    emergency: Mapped[bool] = mapped_column(default=False, server_default=false())
    """A call to an emergency number: no guard judged it, and it is never priced."""


class DailyUsage(Base):
    """A client's external spend on one local day; ``notified_at`` marks the crossing e-mail."""

    __tablename__ = "daily_usage"
    __table_args__ = (CheckConstraint("amount >= 0", name="amount"),)

    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    amount: Mapped[Decimal] = mapped_column(default=Decimal(0))
    notified_at: Mapped[datetime | None]


class ActiveCallSlot(Base):
    """One concurrent external call of a client, held by one application server.

    A slot whose lease has expired belongs to a dead server and may be reclaimed.
    """

    __tablename__ = "active_call_slots"
    __table_args__ = (
        CheckConstraint(in_list("direction", CALL_DIRECTIONS), name="direction"),
        Index("ix_active_call_slots_client", "client_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    call_id: Mapped[str] = mapped_column(String(64), unique=True)
    server: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8))
    acquired_at: Mapped[datetime]
    lease_until: Mapped[datetime]
    reserved: Mapped[Decimal] = mapped_column(default=Decimal(0), server_default="0")
    """What the call may spend of its client's balance (a prepaid call's cap), held until
    its CDR debits what it cost."""
