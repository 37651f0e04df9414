"""What the validators accept, every backend stores: the demo document with every text
at the longest length its validator allows loads, reloads unchanged and exports the same
on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from models.provisioning import DEMO_DATASET, dump_yaml, export_document, load_text
from models.provisioning.scalars import longest_text
from models.provisioning.schema_client import Document
from models.provisioning.syntax import read_yaml


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _model_of(argument)
        if found is not None:
            return found
    return None


def _limit_of(annotation: Any, metadata: list[Any]) -> int | None:
    """The longest text a field allows, from its own metadata or its (optional) type."""
    found = longest_text(metadata)
    if found is not None:
        return found
    if typing.get_origin(annotation) is typing.Annotated:
        return longest_text(typing.get_args(annotation)[1:])
    for argument in typing.get_args(annotation):
        found = _limit_of(argument, [])
        if found is not None:
            return found
    return None


def _longest(value: str, limit: int) -> str:
    """``value`` grown to ``limit`` characters, the same way wherever it appears (so
    references still name what they name); an e-mail grows its local part."""
    padding = "x" * (limit - len(value))
    return padding + value if "@" in value else value + padding


def stretch(model: type[BaseModel], data: dict[str, Any], grown: list[str]) -> dict[str, Any]:
    """``data`` with every text field at its validator's longest; ``grown`` lists the paths."""
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    result: dict[str, Any] = {}
    for key, value in data.items():
        field = fields[key]
        inner = _model_of(field.annotation)
        limit = _limit_of(field.annotation, field.metadata)
        if isinstance(value, dict) and inner is not None:
            result[key] = stretch(inner, value, grown)
        elif isinstance(value, list) and inner is not None:
            result[key] = [stretch(inner, item, grown) for item in value]
        elif isinstance(value, str) and limit is not None and len(value) < limit:
            result[key] = _longest(value, limit)
            grown.append(f"{model.__name__}.{key}")
        elif isinstance(value, dict) and limit is not None:  # template choices: type -> name
            result[key] = {k: _longest(item, limit) for k, item in value.items()}
            grown.append(f"{model.__name__}.{key}{{}}")
        elif isinstance(value, list) and limit is not None:
            result[key] = [
                _longest(item, limit) if isinstance(item, str) else item for item in value
            ]
            grown.append(f"{model.__name__}.{key}[]")
        else:
            result[key] = value
    return result


async def test_every_text_at_its_longest_loads_reloads_and_exports_on_every_backend(
    engine: AsyncEngine,
) -> None:
    data = read_yaml(DEMO_DATASET.read_text(encoding="utf-8"))
    grown: list[str] = []
    text = dump_yaml(stretch(Document, data, grown))
    # the walk reached the free texts of every level of the document
    for path in ("ClientDoc.name", "RateDoc.destination", "TemplateContentDoc.subject"):
        assert path in grown
    report = await load_text(engine, text)
    assert report.created > 100
    assert str(await load_text(engine, text)) == "no changes"
    exported = dump_yaml(await export_document(engine))
    assert str(await load_text(engine, exported)) == "no changes"
    assert "x" * 200 in exported
