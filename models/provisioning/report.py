"""What a load changed: counted row by row as the session flushes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Mapper, Session, object_session

from models.base import Base

_KEY = "provisioning_tally"


@dataclass(frozen=True)
class LoadReport:
    """Rows a load created, updated and deleted; all zero when the database already matched.

    ``source`` names the document (a file path, or ``<document>``).
    """

    source: str
    created: int
    updated: int
    deleted: int

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)

    def __str__(self) -> str:
        """One line: ``12 created, 3 updated, 0 deleted``, or ``no changes``."""
        if not self.changed:
            return "no changes"
        return f"{self.created} created, {self.updated} updated, {self.deleted} deleted"


@dataclass
class Tally:
    """Counts the rows a session inserts, updates (with a net change) and deletes.

    A row created and then completed by a later flush of the same load (a cyclic
    reference set afterwards) counts as created only.
    """

    created: set[int] = field(default_factory=set)
    updated: set[int] = field(default_factory=set)
    deleted: int = 0
    _keep: list[object] = field(default_factory=list)

    def attach(self, session: Session) -> None:
        session.info[_KEY] = self

    def report(self, source: str) -> LoadReport:
        return LoadReport(source, len(self.created), len(self.updated - self.created), self.deleted)


def _tally(target: object) -> Tally | None:
    session = object_session(target)
    found = session.info.get(_KEY) if session is not None else None
    return found if isinstance(found, Tally) else None


@event.listens_for(Base, "after_insert", propagate=True)
def _inserted(_mapper: Mapper[Any], _connection: Any, target: object) -> None:
    tally = _tally(target)
    if tally is not None:
        tally.created.add(id(target))
        tally._keep.append(target)  # ids stay unique while the rows are alive


@event.listens_for(Base, "before_update", propagate=True)
def _updating(_mapper: Mapper[Any], _connection: Any, target: object) -> None:
    tally = _tally(target)
    session = object_session(target)
    if (
        tally is not None
        and session is not None
        and session.is_modified(target, include_collections=False)
    ):
        tally.updated.add(id(target))
        tally._keep.append(target)


@event.listens_for(Base, "after_delete", propagate=True)
def _deleted(_mapper: Mapper[Any], _connection: Any, target: object) -> None:
    tally = _tally(target)
    if tally is not None:
        tally.deleted += 1
