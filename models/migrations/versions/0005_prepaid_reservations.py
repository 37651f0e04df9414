"""prepaid reservations: a live call holds what it may spend of its client's balance

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 17:20:00.000000

A prepaid call reserves the price of its cap when it takes its slot; the balance a new
call may spend is the balance less what the client's live calls hold. The slot goes with
the CDR, which debits what the call cost, in one transaction. On PostgreSQL
``callcontrol_acquire`` takes the reservation in the same statement as the slot.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OLD = "callcontrol_acquire(integer, integer, varchar, varchar, varchar, timestamp, timestamp)"

ACQUIRE = """
CREATE OR REPLACE FUNCTION callcontrol_acquire(
    p_client integer,
    p_max integer,
    p_call varchar,
    p_server varchar,
    p_direction varchar,
    p_now timestamp,
    p_until timestamp,
    p_reserve numeric
) RETURNS TABLE (taken boolean, held integer, reclaimed integer, funded boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_live integer;
    v_expired integer;
    v_holding integer;
    v_reserved numeric;
    v_balance numeric;
BEGIN
    IF p_max > 0 OR p_reserve > 0 THEN
        PERFORM 1 FROM clients WHERE id = p_client FOR NO KEY UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no client #%', p_client USING ERRCODE = 'no_data_found';
        END IF;
    END IF;
    SELECT count(*) FILTER (WHERE lease_until > p_now),
           count(*) FILTER (WHERE lease_until <= p_now),
           count(*) FILTER (WHERE call_id = p_call AND lease_until > p_now),
           coalesce(sum(reserved) FILTER (WHERE lease_until > p_now), 0)
      INTO v_live, v_expired, v_holding, v_reserved
      FROM active_call_slots WHERE client_id = p_client;
    IF v_expired > 0 THEN
        DELETE FROM active_call_slots WHERE client_id = p_client AND lease_until <= p_now;
    END IF;
    IF v_holding > 0 THEN
        RETURN QUERY SELECT true, v_live, v_expired, true;
        RETURN;
    END IF;
    IF p_max > 0 AND v_live >= p_max THEN
        RETURN QUERY SELECT false, v_live, v_expired, true;
        RETURN;
    END IF;
    IF p_reserve > 0 THEN
        SELECT balance INTO v_balance FROM clients WHERE id = p_client;
        IF v_balance - v_reserved < p_reserve THEN
            RETURN QUERY SELECT false, v_live, v_expired, false;
            RETURN;
        END IF;
    END IF;
    INSERT INTO active_call_slots
        (client_id, call_id, server, direction, acquired_at, lease_until, reserved)
    VALUES (p_client, p_call, p_server, p_direction, p_now, p_until, p_reserve);
    RETURN QUERY SELECT true, v_live + 1, v_expired, true;
END
$$
"""


ADMIT = """
CREATE OR REPLACE FUNCTION callcontrol_admit(
    p_client integer,
    p_max integer,
    p_call varchar,
    p_server varchar,
    p_direction varchar,
    p_now timestamp,
    p_until timestamp,
    p_day date
) RETURNS TABLE (taken boolean, held integer, reclaimed integer, spent numeric, balance numeric)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r record;
BEGIN
    SELECT * INTO r
      FROM callcontrol_acquire(p_client, p_max, p_call, p_server, p_direction, p_now, p_until, 0);
    RETURN QUERY SELECT r.taken, r.held, r.reclaimed,
        coalesce((SELECT d.amount FROM daily_usage d
                   WHERE d.client_id = p_client AND d.day = p_day), 0)
        + coalesce((SELECT sum(s.reserved) FROM active_call_slots s
                     WHERE s.client_id = p_client AND s.lease_until > p_now), 0),
        (SELECT c.balance - coalesce((SELECT sum(s.reserved) FROM active_call_slots s
                                       WHERE s.client_id = p_client
                                         AND s.lease_until > p_now), 0)
           FROM clients c WHERE c.id = p_client);
END
$$
"""
"""A call's slot taken and its client's counters read in one statement: what the pipeline
reads (live calls, the day's spend, the balance left) comes back with the slot."""

RESERVE = """
CREATE OR REPLACE FUNCTION callcontrol_reserve(
    p_client integer,
    p_call varchar,
    p_amount numeric,
    p_now timestamp
) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_balance numeric;
    v_reserved numeric;
BEGIN
    SELECT balance INTO v_balance FROM clients WHERE id = p_client FOR NO KEY UPDATE;
    SELECT coalesce(sum(reserved), 0) INTO v_reserved FROM active_call_slots
     WHERE client_id = p_client AND lease_until > p_now AND call_id <> p_call;
    IF v_balance IS NULL OR v_balance - v_reserved < p_amount THEN
        RETURN false;
    END IF;
    UPDATE active_call_slots SET reserved = p_amount WHERE call_id = p_call;
    RETURN FOUND;
END
$$
"""
"""A slot already taken holds ``p_amount`` of the balance, if what is left covers it."""


def upgrade() -> None:
    with op.batch_alter_table("active_call_slots") as table:
        table.add_column(
            sa.Column(
                "reserved",
                sa.Numeric(precision=18, scale=4),
                server_default="0",
                nullable=False,
            )
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {OLD}")
        op.execute(ACQUIRE)
        op.execute(ADMIT)
        op.execute(RESERVE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS callcontrol_reserve(integer, varchar, numeric, timestamp)"
        )
        op.execute(
            "DROP FUNCTION IF EXISTS callcontrol_admit(integer, integer, varchar, varchar,"
            " varchar, timestamp, timestamp, date)"
        )
        op.execute(
            "DROP FUNCTION IF EXISTS callcontrol_acquire("
            "integer, integer, varchar, varchar, varchar, timestamp, timestamp, numeric)"
        )
        op.execute(_previous().ACQUIRE)
    with op.batch_alter_table("active_call_slots") as table:
        table.drop_column("reserved")


def _previous() -> ModuleType:
    """Revision 0003, whose function a downgrade puts back."""
    path = Path(__file__).with_name("0003_acquire_function.py")
    spec = importlib.util.spec_from_file_location("callcontrol_0003", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
