"""A match list's regular expression is refused when the backtracking engine could try too
many ways on one number: tenants write them and every call searches them."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from models.provisioning.regexps import LIMIT, ways
from models.provisioning.scalars import Regexp

ORDINARY = [
    r"^34(80|90)",
    r"^\+447\d{9}$",
    r"^346\d*",
    r"^34(80[0-9]|90[0-9])",
    r"(?=34)\d+",
    r"(?!900)(?>\d+)$",
    r"^(\+)?(?(1)34|0034)",
]
COSTLY = [r"(\d*)*x", r"(\d+)+$", r"((\d+)+)+x", r"(\d*\d*\d*)*x", r"\d*\d*\d*\d*x", r"(\d?){16}x"]


@pytest.mark.parametrize("expression", ORDINARY)
def test_ordinary_expressions_count_few_ways_and_are_accepted(expression: str) -> None:
    assert ways(expression) <= 17
    assert TypeAdapter(Regexp).validate_python(expression) == expression


@pytest.mark.parametrize("expression", COSTLY)
def test_nested_or_chained_repeats_are_refused_in_one_line(expression: str) -> None:
    assert ways(expression) > LIMIT
    with pytest.raises(ValidationError) as refused:
        TypeAdapter(Regexp).validate_python(expression)
    message = refused.value.errors()[0]["msg"]
    assert message.startswith(f"Value error, too costly to test: more than {LIMIT} ways")
    assert "\n" not in message
