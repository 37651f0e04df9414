"""Tenant templates rendered in a process of their own, under hard limits (DESIGN §3.10).

:class:`TemplateWorker` starts ``models/template_sandbox.py`` as a child process and awaits
its replies on a pipe, so a render never holds the event loop. Each render is bounded by
:class:`RenderLimits`: CPU time (the worker's own timer ends it), address space
(``RLIMIT_AS``: a render that asks for more fails with MemoryError), wall-clock time (the
worker is killed) and output size (the sandbox stops at the caller's ``max_chars``). A
worker that overran is gone: the next render starts a new one.

Why a dedicated child speaking over a pipe rather than a process pool: a pool cannot kill
one worker that overruns (it only breaks as a whole), and its workers are forked or
spawned from the service's own modules; this child is ``python -P`` running one file that
imports only the standard library and Jinja2 (about 60 ms and 25 MB to start), started
with ``asyncio`` subprocess machinery (fork-exec, never a bare fork of a threaded
process). One worker, one render at a time: renders are rare (an e-mail per limit
crossed, a provisioning load), and tenant code then takes at most one core, never the
service's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from models import template_sandbox

Limit = Literal["cpu", "memory", "time", "output", "worker"]
"""Which limit a render crossed; ``worker``: the worker ended for another reason."""

MAX_REPLY = 16 * 1024 * 1024
"""Bytes of one reply: a text of MAX_BODY characters, JSON-escaped, fits several times."""
CLOSE_WAIT = 2.0
START_WAIT = 30.0
"""Seconds a new worker may take to start (a loaded machine) before it counts as failed."""
"""Seconds a worker may take to end when its input is closed, before it is killed."""


class WorkerFailed(RuntimeError):
    """A worker process that did not start (it died, or did not answer in time)."""


class WorkerClosed(RuntimeError):
    """A render asked of a :class:`TemplateWorker` after :meth:`TemplateWorker.close`."""


@dataclass(frozen=True, slots=True)
class RenderLimits:
    """What one render may use; 0 for any of them: no such limit."""

    cpu: float = 1.0
    """CPU seconds."""
    memory_mib: int = 256
    """Mebibytes of address space of the whole worker (Python and Jinja2 take about 25)."""
    wall: float = 5.0
    """Seconds of wall-clock time (a render starved of CPU, or stuck)."""


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str
    missing: tuple[str, ...]
    """Names the template used that were not given (rendered as nothing)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A template the sandbox refused: ``reason`` is one line; ``limit`` says which limit
    it crossed, or None for a template that is unsafe or broken."""

    reason: str
    limit: Limit | None = None


class TemplateWorker:
    """Renders tenant templates in a child process, one at a time, never on the event loop.

    :meth:`start` starts the process ahead of the first render (else the first render
    does); :meth:`close` ends it. ``started`` counts processes started (one more after
    each overrun).
    """

    def __init__(self, limits: RenderLimits | None = None) -> None:
        self.limits = limits or RenderLimits()
        self.started = 0
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def __aenter__(self) -> TemplateWorker:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start the process now, if it is not running (:class:`WorkerFailed` when it cannot)."""
        async with self._lock:
            await self._running()

    async def render(
        self, source: str, values: Mapping[str, object], *, html: bool, max_chars: int
    ) -> Rendered | Refusal:
        """``source`` rendered with ``values`` (plain data), or why not."""
        request = pickle.dumps((self.limits.cpu, source, html, dict(values), max_chars))
        async with self._lock:
            try:
                process = await self._running()
            except WorkerFailed as exc:
                return Refusal(str(exc), "worker")
            assert process.stdin is not None
            assert process.stdout is not None
            try:
                async with asyncio.timeout(self.limits.wall or None):
                    process.stdin.write(len(request).to_bytes(4, "big") + request)
                    await process.stdin.drain()
                    size = int.from_bytes(await process.stdout.readexactly(4), "big")
                    if size > MAX_REPLY:
                        await self._discard(process)
                        return Refusal(f"ended its worker (a reply of {size} bytes)", "worker")
                    reply = json.loads(await process.stdout.readexactly(size))
            except TimeoutError:
                await self._discard(process)
                return Refusal(f"renders over the time limit ({self.limits.wall:g} s)", "time")
            except (asyncio.IncompleteReadError, ConnectionError):
                return await self._ended(process)
            except BaseException:
                # Cancelled (or a reply that is not JSON): the worker's state is unknown.
                await asyncio.shield(self._discard(process))
                raise
            if "refused" not in reply:
                return Rendered(str(reply["text"]), tuple(reply["missing"]))
            limit = reply.get("limit")
            if limit == "memory":
                await self._discard(process)  # a fresh worker for the next render
                mib = self.limits.memory_mib
                return Refusal(f"renders over the memory limit ({mib} MiB)", "memory")
            return Refusal(str(reply["refused"]), "output" if limit == "output" else None)

    async def close(self) -> None:
        """End the process (at end of input, killed if it lingers); no render after this."""
        self._closed = True
        async with self._lock:
            process, self._process = self._process, None
            if process is None:
                return
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), CLOSE_WAIT)
            except TimeoutError:
                await self._discard(process)

    async def _running(self) -> asyncio.subprocess.Process:
        if self._closed:
            raise WorkerClosed("the template worker is closed")
        process = self._process
        if process is not None and process.returncode is None:
            return process
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-P",  # the script's folder (models/) must not shadow the standard library
            template_sandbox.__file__,
            str(self.limits.memory_mib),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self.started += 1
        process = self._process
        assert process.stdout is not None
        # The wall-clock limit is the render's: wait for the worker to be ready first.
        try:
            async with asyncio.timeout(START_WAIT):
                ready = await process.stdout.readexactly(len(template_sandbox.READY))
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            ready = b""
        if ready != template_sandbox.READY:
            await self._discard(process)
            raise WorkerFailed("the template worker did not start")
        return process

    async def _discard(self, process: asyncio.subprocess.Process) -> None:
        if self._process is process:
            self._process = None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it ended as it was being killed
                process.kill()
        await process.wait()

    async def _ended(self, process: asyncio.subprocess.Process) -> Refusal:
        """The worker ended while rendering: its CPU timer, or something else."""
        code = await process.wait()
        if self._process is process:
            self._process = None
        if code in (-signal.SIGPROF, -signal.SIGXCPU):
            return Refusal(f"renders over the CPU limit ({self.limits.cpu:g} s)", "cpu")
        if code < 0:
            how = f"killed by signal {-code}"
            with contextlib.suppress(ValueError):
                how = f"killed by {signal.Signals(-code).name}"
        else:
            how = f"exit status {code}"
        return Refusal(f"ended its worker ({how})", "worker")
