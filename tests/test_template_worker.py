"""Tenant templates render in a worker process under hard limits (DESIGN §3.10): a CPU or
memory bomb is refused within a bounded time, the worker is replaced, and the event loop
never waits for a render."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from callcontrol.config import Config
from callcontrol.mailer import Mailer, MailError, TemplateRefused
from models.template_worker import Refusal, Rendered, RenderLimits, TemplateWorker
from tests.test_notifications_mail import VALUES, template, until

NESTED_LOOPS = "{% set s = 'x' * 25000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}"
"""625 million iterations: the hostile-tenant test's body, 26 s of a blocked event loop."""
DOUBLINGS = "{% set s = 'xxxxxxxxxxxxxxxx' %}" + "{% set s = s ~ s %}" * 40 + "{{ s|length }}"
"""A text doubled 40 times: 16 TiB, unless something stops it."""
WITHIN = 10.0
"""Seconds a refusal may take: the limits' 1 s, a loaded machine, a worker's start."""


@pytest.fixture
async def worker() -> AsyncIterator[TemplateWorker]:
    async with TemplateWorker(RenderLimits(cpu=1.0, memory_mib=256, wall=8.0)) as running:
        yield running


async def render(worker: TemplateWorker, source: str) -> Rendered | Refusal:
    async with asyncio.timeout(WITHIN):
        return await worker.render(source, VALUES, html=False, max_chars=1_000_000)


async def test_nested_loops_over_a_long_text_are_refused_at_the_cpu_limit(
    worker: TemplateWorker,
) -> None:
    await worker.start()
    began = time.monotonic()

    refused = await render(worker, NESTED_LOOPS)

    took = time.monotonic() - began
    assert refused == Refusal("renders over the CPU limit (1 s)", "cpu")
    assert 0.9 < took < WITHIN, took


async def test_a_chain_of_doublings_is_refused_at_the_memory_limit(
    worker: TemplateWorker,
) -> None:
    began = time.monotonic()

    refused = await render(worker, DOUBLINGS)

    assert refused == Refusal("renders over the memory limit (256 MiB)", "memory")
    assert time.monotonic() - began < WITHIN


async def test_the_worker_is_replaced_after_an_overrun_and_renders_the_next_template(
    worker: TemplateWorker,
) -> None:
    assert await render(worker, "{{ client }} spent {{ amount }}") == Rendered(
        "acme spent 50.00", ()
    )
    assert worker.started == 1

    assert isinstance(await render(worker, NESTED_LOOPS), Refusal)
    assert await render(worker, "{{ client }}{{ nobody }}") == Rendered("acme", ("nobody",))
    assert isinstance(await render(worker, DOUBLINGS), Refusal)
    assert await render(worker, "{{ currency }}") == Rendered("EUR", ())

    assert worker.started == 3  # one per overrun


async def test_a_render_past_the_wall_clock_limit_is_killed() -> None:
    # No CPU limit: only the wall clock stops it.
    async with TemplateWorker(RenderLimits(cpu=0, wall=0.5)) as worker:
        began = time.monotonic()
        refused = await render(worker, NESTED_LOOPS)
        took = time.monotonic() - began

        assert refused == Refusal("renders over the time limit (0.5 s)", "time")
        assert 0.5 <= took < 5, took
        assert await render(worker, "{{ amount }}") == Rendered("50.00", ())


async def test_the_event_loop_keeps_running_while_a_bomb_renders(
    worker: TemplateWorker,
) -> None:
    await worker.start()
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        assert isinstance(await render(worker, NESTED_LOOPS), Refusal)
    finally:
        ticker.cancel()
    assert len(gaps) > 50  # a second of ticks, at least
    assert max(gaps) < 0.5, max(gaps)


async def test_a_cancelled_render_ends_its_worker_and_the_next_render_works(
    worker: TemplateWorker,
) -> None:
    rendering = asyncio.create_task(render(worker, NESTED_LOOPS))
    await asyncio.sleep(0.3)
    rendering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rendering

    assert await render(worker, "{{ client }}") == Rendered("acme", ())
    assert worker.started == 2


async def test_the_mailer_refuses_a_bomb_in_one_line_naming_the_template_and_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    mailer = Mailer(Config(template_cpu_limit=0.5))
    try:
        with pytest.raises(TemplateRefused) as refused:
            async with asyncio.timeout(WITHIN):
                await mailer.render(template(NESTED_LOOPS), VALUES, to="a@b.example")
        assert str(refused.value) == (
            "brand's template 't' (en) body refused: renders over the CPU limit (0.5 s)"
        )

        # notify(): rendered by run()'s task, refused in one logged line, nothing sent
        task = asyncio.create_task(mailer.run())
        assert mailer.notify(template(DOUBLINGS), VALUES, to="a@b.example", about="hostile e-mail")
        await until(lambda: mailer.refused == 1)
        mail = await mailer.render(template("{{ client }}"), VALUES, to="a@b.example")
        assert mail.body == "acme"
    finally:
        await mailer.stop(grace=0)
    assert task.done()
    assert (mailer.sent, mailer.refused, mailer.pending) == (0, 1, 0)
    with pytest.raises(MailError, match="the mailer is stopped"):
        await mailer.render(template("{{ client }}"), VALUES, to="a@b.example")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "hostile e-mail not sent: brand's template 't' (en) body refused: "
        "renders over the memory limit (256 MiB)"
    ]
