"""Plain-text tables of the CLI: columns padded to their widest cell, no trailing blanks."""

from __future__ import annotations

from collections.abc import Sequence

import typer


def echo_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``header`` and ``rows`` as aligned columns."""
    lines = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        typer.echo("  ".join(cells).rstrip())


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
