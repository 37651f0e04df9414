"""Provisioning: one YAML document describes brands, clients and everything under them.

``callcontrol provision FILE.yaml`` calls :func:`load_file`. Loading is validated
(errors are one line naming the path, e.g.
``clients[1].outgoing_ddi_rule.patterns[0].prefix: must be 1-3 digits followed by '*'``),
transactional (all or nothing) and idempotent (loading the same file again
changes nothing). :func:`export_document` and :func:`dump_yaml` write the
database back as a document that loads to the same state. The document format
is described in ``docs/provisioning.md``.
"""

from __future__ import annotations

from pathlib import Path

from models.provisioning.export import export_document
from models.provisioning.load import load_file, load_text
from models.provisioning.report import LoadReport
from models.provisioning.syntax import dump_yaml

DEMO_DATASET: Path = Path(__file__).with_name("demo.yaml")
"""The dataset ``callcontrol demo`` loads and explains."""

__all__ = ["DEMO_DATASET", "LoadReport", "dump_yaml", "export_document", "load_file", "load_text"]
