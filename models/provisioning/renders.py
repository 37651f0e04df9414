"""Test renders of a document's notification templates, under the service's limits.

A template that renders over a limit (CPU, memory, wall-clock time, output size) would
never be sent: it is refused at load, with its path, e.g.
``clients[0].templates[1].contents[0].body: renders over the CPU limit (1 s)``. Renders
run in a :class:`~models.template_worker.TemplateWorker`, the same sandbox and limits the
mailer uses, with sample values of the template's type. A template that is merely unsafe
or broken is left to the mailer's refusal at send time, as before.

Verdicts are remembered for the life of the process (a passed text passes again under the
same limits), so reloading a document renders only what changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from dialplan.errors import ProvisioningError
from models.provisioning.schema import TemplateContentDoc, TemplateDoc
from models.provisioning.schema_client import Document
from models.template_sandbox import MAX_BODY, MAX_SUBJECT
from models.template_worker import Refusal, RenderLimits, TemplateWorker

SAMPLES: dict[str, dict[str, object]] = {
    # what callcontrol.guards gives a max_daily_usage template
    "max_daily_usage": {
        "client": "acme-north",
        "limit": "50.00",
        "amount": "50.02",
        "spent": "50.02",
        "currency": "EUR",
        "day": "2026-12-04",
        "timezone": "Europe/Madrid",
    },
    # what callcontrol.guards gives a low_balance template
    "low_balance": {
        "client": "acme-south",
        "balance": "4.9800",
        "threshold": "5.0000",
        "currency": "EUR",
    },
}
"""Values a test render of each template type gets; other types get none (a name a
template uses then renders as nothing)."""

_PASSED: set[bytes] = set()
_REMEMBERED = 4096


async def check_renders(document: Document, limits: RenderLimits) -> None:
    """Raise ProvisioningError for the first template text that renders over ``limits``."""
    async with TemplateWorker(limits) as worker:
        for path, kind, content in _contents(document):
            html = content.body_type == "html"
            for part, source, max_chars in (
                ("subject", content.subject, MAX_SUBJECT),
                ("body", content.body, MAX_BODY),
            ):
                key = _key(limits, kind, part, source, html and part == "body")
                if key in _PASSED:
                    continue
                values = SAMPLES.get(kind, {})
                rendered = await worker.render(
                    source, values, html=html and part == "body", max_chars=max_chars
                )
                if isinstance(rendered, Refusal) and rendered.limit is not None:
                    raise ProvisioningError(f"{path}.{part}", rendered.reason)
                if len(_PASSED) >= _REMEMBERED:
                    _PASSED.clear()
                _PASSED.add(key)


def _contents(document: Document) -> Iterator[tuple[str, str, TemplateContentDoc]]:
    def each(
        templates: list[TemplateDoc], at: str
    ) -> Iterator[tuple[str, str, TemplateContentDoc]]:
        for index, template in enumerate(templates):
            for number, content in enumerate(template.contents):
                yield f"{at}[{index}].contents[{number}]", template.type, content

    yield from each(document.templates, "templates")
    for index, brand in enumerate(document.brands):
        yield from each(brand.templates, f"brands[{index}].templates")
    for index, client in enumerate(document.clients):
        yield from each(client.templates, f"clients[{index}].templates")


def _key(limits: RenderLimits, kind: str, part: str, source: str, html: bool) -> bytes:
    digest = hashlib.sha256(repr((limits, kind, part, html)).encode())
    digest.update(source.encode("utf-8", "surrogatepass"))
    return digest.digest()
