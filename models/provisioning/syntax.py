"""From YAML text to a :class:`Document` and back, with one-line errors.

Reading uses the YAML 1.2 core rules for plain scalars, not PyYAML's YAML 1.1 ones,
because the 1.1 rules corrupt telephony data silently: ``country: NO`` would be
``False``, ``mode: off`` ``False``, ``to: 20:00`` the integer 1200, ``0101`` an
octal 65 and ``+34910000000`` an integer without its ``+``. Here only
``true``/``false`` are booleans, integers have no sign ``+`` and no leading zero,
and decimals are read as exact :class:`~decimal.Decimal` values. Duplicate keys
are errors. Writing quotes every string a YAML 1.1 reader could misread, so the
output reads the same in any YAML tool.
"""

from __future__ import annotations

import difflib
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from dialplan.errors import ProvisioningError, shown
from models.provisioning.schema_client import Document

try:  # libyaml's parser, when PyYAML has it: ten times faster on large documents
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(_SafeLoader):
    """SafeLoader with YAML 1.2 core scalars and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                # Every key of the document is a name: a number, a list or a map as a key
                # is a mistake (and a list or a map cannot even be a Python dict key).
                raise _refused(key_node, f"a key must be text, not {_kind(key)}")
            if key in seen:
                raise _refused(key_node, f"duplicate key {shown(key)}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_decimal(self, node: yaml.ScalarNode) -> Decimal:
        text = str(self.construct_scalar(node))
        if not _DECIMAL.fullmatch(text):
            # ``!!float .nan``, ``.inf`` or ``1_000.5``: no amount of money or time is one
            raise _refused(node, f"{shown(text)} is not a decimal number such as 0.012")
        return Decimal(text)

    def construct_integer(self, node: yaml.ScalarNode) -> int:
        text = str(self.construct_scalar(node))
        if not _INTEGER.fullmatch(text):
            # PyYAML's own ``!!int`` reads 0x1F, 0o17, 1_000 and even 20:00 (as 1200)
            raise _refused(node, f"{shown(text)} is not a whole number such as 30")
        return int(text)

    def construct_boolean(self, node: yaml.ScalarNode) -> bool:
        text = str(self.construct_scalar(node))
        if text.lower() not in ("true", "false"):
            raise _refused(node, f"{shown(text)} is not true or false")
        return text.lower() == "true"


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (quote a key that reads as a boolean)"
    return f"the number {shown(value)} (quote a key that reads as a number)"


def _refused(node: yaml.Node, problem: str) -> yaml.constructor.ConstructorError:
    return yaml.constructor.ConstructorError(None, None, problem, node.start_mark)


_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), None)
_Loader.add_implicit_resolver(_INT, re.compile(r"^-?(?:0|[1-9][0-9]*)$"), list("-0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT, re.compile(r"^-?(?:0|[1-9][0-9]*)\.[0-9]+$"), list("-0123456789")
)
_Loader.add_constructor(_FLOAT, _Loader.construct_decimal)
_Loader.add_constructor(_INT, _Loader.construct_integer)
_Loader.add_constructor(_BOOL, _Loader.construct_boolean)


def read_yaml(text: str) -> Any:
    """Plain data from YAML text, read with the rules above; raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: builds plain data only


def parse_document(text: str, source: str = "<document>") -> Document:
    """Parse and validate the structure of one document; raise one-line ProvisioningError."""
    try:
        data = read_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        raise ProvisioningError("", f"{where}: YAML syntax error: {problem}") from exc
    except yaml.reader.ReaderError as exc:
        # a control character in the text: its own message spans two lines
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        character = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise ProvisioningError(
            "",
            f"{source}, line {line}, column {column}: YAML syntax error: "
            f"character {character!r} is not allowed (a control character)",
        ) from exc
    except yaml.YAMLError as exc:
        raise ProvisioningError("", f"{source}: YAML syntax error: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProvisioningError("", f"{source}: the document must be a mapping of sections")
    try:
        return Document.model_validate(data)
    except ValidationError as exc:
        raise _translate(exc.errors()[0]) from exc


def _translate(error: ErrorDetails) -> ProvisioningError:
    """The first pydantic error as ``path: message``."""
    location = [part for part in error["loc"] if part != "[key]"]
    path = format_path(location)
    kind = error["type"]
    if kind == "extra_forbidden":
        return ProvisioningError(path, _unknown_key(location))
    if kind == "missing":
        return ProvisioningError(path, "is required")
    if kind == "value_error" and "ctx" in error:
        return ProvisioningError(path, str(error["ctx"]["error"]))
    message = error["msg"]
    return ProvisioningError(path, message[:1].lower() + message[1:])


def format_path(location: list[int | str] | tuple[int | str, ...]) -> str:
    """``('clients', 1, 'ddis', 0, 'e164')`` -> ``clients[1].ddis[0].e164``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = str(part)
            if len(name) > 40 or not name.isprintable():
                name = shown(name, 40)  # an unknown key can be anything a tenant typed
            path += f".{name}" if path else name
    return path


def _unknown_key(location: list[int | str]) -> str:
    """Name the allowed keys of the node holding an unknown key, and the likeliest one."""
    model: Any = Document
    for part in location[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        model = _model_in(field.annotation) if field else None
    if model is None:
        return "unknown key"
    known = [field.alias or name for name, field in model.model_fields.items()]
    close = difflib.get_close_matches(str(location[-1]), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {hint}allowed: {', '.join(known)}"


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


class _Dumper(yaml.SafeDumper):
    """SafeDumper (YAML 1.1 quoting) writing decimals as numbers and text blocks literally."""

    def represent_decimal(self, value: Decimal) -> yaml.ScalarNode:
        text = format(value.normalize(), "f")
        return self.represent_scalar(_FLOAT if "." in text else _INT, text)

    def represent_instant(self, value: datetime) -> yaml.ScalarNode:
        return self.represent_scalar(_TIMESTAMP, value.isoformat())

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # indent list items under their key

    def represent_items(self, value: list[Any]) -> yaml.SequenceNode:
        """Short lists of plain values on one line: ``features: [billing, queues]``."""
        flow = bool(value) and all(isinstance(item, str | int | Decimal) for item in value)
        return self.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)

    def represent_text(self, value: str) -> yaml.ScalarNode:
        if "\n" in value:
            return self.represent_scalar("tag:yaml.org,2002:str", value, style="|")
        return self.represent_str(value)


_Dumper.add_representer(Decimal, _Dumper.represent_decimal)
_Dumper.add_representer(datetime, _Dumper.represent_instant)
_Dumper.add_representer(str, _Dumper.represent_text)
_Dumper.add_representer(list, _Dumper.represent_items)


def dump_yaml(document: dict[str, object]) -> str:
    """Readable, stable YAML: keys in document order, block style, Unicode kept."""
    return yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
