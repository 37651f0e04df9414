"""acquire function: a concurrent-call slot taken in one round trip on PostgreSQL

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 13:00:00.000000

``callcontrol_acquire`` runs what ``models.slots.acquire`` runs in a transaction of five
requests (BEGIN, the client's row lock, the tally, the insert, COMMIT) as one statement:
called outside a transaction it is its own, and at READ COMMITTED each statement in it
takes a new snapshot, so the tally after the lock sees every slot committed before it.
SQLite and MariaDB keep the transaction.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ACQUIRE = """
CREATE OR REPLACE FUNCTION callcontrol_acquire(
    p_client integer,
    p_max integer,
    p_call varchar,
    p_server varchar,
    p_direction varchar,
    p_now timestamp,
    p_until timestamp
) RETURNS TABLE (taken boolean, held integer, reclaimed integer)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_live integer;
    v_expired integer;
    v_holding integer;
BEGIN
    IF p_max > 0 THEN
        PERFORM 1 FROM clients WHERE id = p_client FOR NO KEY UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no client #%', p_client USING ERRCODE = 'no_data_found';
        END IF;
    END IF;
    SELECT count(*) FILTER (WHERE lease_until > p_now),
           count(*) FILTER (WHERE lease_until <= p_now),
           count(*) FILTER (WHERE call_id = p_call AND lease_until > p_now)
      INTO v_live, v_expired, v_holding
      FROM active_call_slots WHERE client_id = p_client;
    IF v_expired > 0 THEN
        DELETE FROM active_call_slots WHERE client_id = p_client AND lease_until <= p_now;
    END IF;
    IF v_holding > 0 THEN
        RETURN QUERY SELECT true, v_live, v_expired;
        RETURN;
    END IF;
    IF p_max > 0 AND v_live >= p_max THEN
        RETURN QUERY SELECT false, v_live, v_expired;
        RETURN;
    END IF;
    INSERT INTO active_call_slots (client_id, call_id, server, direction, acquired_at, lease_until)
    VALUES (p_client, p_call, p_server, p_direction, p_now, p_until);
    RETURN QUERY SELECT true, v_live + 1, v_expired;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(ACQUIRE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS callcontrol_acquire("
            "integer, integer, varchar, varchar, varchar, timestamp, timestamp)"
        )
