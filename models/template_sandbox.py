"""The sandbox tenant templates render in, and the worker process that runs it (DESIGN §3.10).

Templates are written by tenants, so they run in Jinja2's immutable sandbox, with these
promises:

- no Python internals: any ``_`` attribute, or a method that changes a list or dict,
  is refused at once, never rendered as an empty value;
- a template that does not compile, or fails while rendering, is refused the same way,
  with a one-line reason;
- a misspelt variable (or attribute of a dict) is not an error: it renders as nothing,
  and the reply names it;
- HTML autoescapes the values;
- cheap bounds against runaway templates: ``range`` hands out 100,000 items per render
  in all; ``*``, ``**`` and ``+`` refuse to build numbers over 2**256 or texts over
  :data:`MAX_BODY` characters, and so do widths given to str methods, to the ``center``,
  ``indent`` and ``format`` filters, to ``%`` and to ``str.format``; ``lipsum`` is gone;
  a text past the caller's limit (:data:`MAX_BODY`, :data:`MAX_SUBJECT`) is refused.

Those bounds do not catch every deliberate CPU or memory bomb (nested loops over long
texts, a chain of ``~`` doublings), so nothing here runs in the service's process: this
file is also the **worker**, a process of its own that
:class:`models.template_worker.TemplateWorker` starts and speaks to over its standard
input and output. The worker imports only the standard library and Jinja2 (it is run by
path, so no package ``__init__`` runs), limits its address space (``RLIMIT_AS``), and
renders each request under a CPU-time timer (``ITIMER_PROF``) whose signal ends the
process, even inside C code.

Protocol, one request at a time: a 4-byte big-endian length and a pickle of
``(cpu_seconds, source, html, values, max_chars)`` in (the service's own data), the same
length prefix and a JSON object out (the worker's output is read as text, never
unpickled): ``{"text": ..., "missing": [...]}`` or ``{"refused": reason, "limit": ...}``
where ``limit`` is ``"output"`` or ``"memory"`` for a limit crossed and null for a
template that is unsafe or broken. End of input ends the worker.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import re
import resource
import signal
import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jinja2 import ChainableUndefined, TemplateError, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment

MAX_BODY = 1_000_000
"""Characters a rendered body (or any single text a template builds) may hold."""
MAX_SUBJECT = 1_000
MAX_INT_BITS = 256
"""Integers a template computes stay below 2**256."""
MIB = 1024 * 1024

Reply = dict[str, Any]


@dataclass
class _Render:
    """What one render has used so far (templates run synchronously, one per context)."""

    range_left: int = MAX_RANGE
    missing: list[str] = field(default_factory=list)


_CURRENT: ContextVar[_Render] = ContextVar("callcontrol_template_render")


class _Missing(ChainableUndefined):
    """A misspelt name: renders as nothing, and the render reports it."""

    __slots__ = ()

    def __str__(self) -> str:
        render = _CURRENT.get(None)
        if render is not None and self._undefined_name is not None:
            render.missing.append(str(self._undefined_name))
        return ""


def _range(*args: int) -> range:
    items = range(*args)
    render = _CURRENT.get(None)
    if render is not None:
        render.range_left -= len(items)
        if render.range_left < 0:
            raise SecurityError(f"loops over more than {MAX_RANGE} items in all")
    return items


def _check_size(operator: str, left: Any, right: Any) -> None:
    """Refuse ``left operator right`` before it builds a huge number or text."""
    if isinstance(left, int) and isinstance(right, int):
        bits = left.bit_length()
        if operator == "**" and right > 0 and abs(left) > 1:
            bits *= right
        elif operator == "*":
            bits += right.bit_length()
        if bits > MAX_INT_BITS:
            raise SecurityError(f"{operator} would build a number over {MAX_INT_BITS} bits")
        return
    sizes = [len(value) for value in (left, right) if isinstance(value, str | list | tuple)]
    counts = [value for value in (left, right) if isinstance(value, int)]
    if operator == "*" and sizes and counts:
        total = sizes[0] * max(counts[0], 0)
    elif operator == "+":
        total = sum(sizes)
    else:
        return
    if total > MAX_BODY:
        raise SecurityError(f"{operator} would build a text over {MAX_BODY} characters")


# A width or precision of a million or more (or one taken from the arguments) in a
# printf-style or str.format specification: the text would be huge.
_PRINTF_WIDE = re.compile(r"%[-#0 +]*(?:\*|\d{7,}|\d*\.(?:\*|\d{7,}))")
_FORMAT_WIDE = re.compile(r"\{[^{}]*:[^{}]*(?:\{|\d{7,})")


def _check_width(*values: object) -> None:
    for value in values:
        if isinstance(value, int) and value > MAX_BODY:
            raise SecurityError(f"a width of {value} is over {MAX_BODY}")


def _check_spec(text: object, pattern: re.Pattern[str]) -> None:
    if isinstance(text, str) and pattern.search(text):
        raise SecurityError(f"the format {text[:60]!r} is too wide")


def _bounded(name: str, filter_: Callable[..., Any]) -> Callable[..., Any]:
    """``filter_`` refusing huge widths (``center``, ``indent``) or formats (``format``)."""

    @functools.wraps(filter_)
    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_width(*args, *kwargs.values())
        if name == "format":
            _check_spec(value, _PRINTF_WIDE)
        return filter_(value, *args, **kwargs)

    return bounded


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=_Missing)
        self.globals["range"] = _range
        self.globals.pop("lipsum", None)  # lipsum(10**6) writes forever
        for name in ("center", "indent", "format"):
            self.filters[name] = _bounded(name, self.filters[name])

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        # The stock sandbox returns an undefined that renders as nothing; a template
        # reaching for internals is refused loudly instead.
        raise SecurityError(f"{type(obj).__name__}.{attribute} is not allowed")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "%":
            _check_spec(left, _PRINTF_WIDE)
        else:
            _check_size(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_spec(value.__self__, _FORMAT_WIDE)
        return wrapped

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        # str methods that pad or repeat ('x'.ljust(10**9), .zfill, .center, ...)
        if isinstance(getattr(obj, "__self__", None), str):
            _check_width(*args, *kwargs.values())
        return super().call(context, obj, *args, **kwargs)


_TEXT = _Sandbox(autoescape=False)
_HTML = _Sandbox(autoescape=True)


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s text, at most 200 characters."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _refused(reason: str, limit: str | None = None) -> Reply:
    return {"refused": reason, "limit": limit}


def render_text(source: str, values: Mapping[str, object], *, html: bool, max_chars: int) -> Reply:
    """The reply for one template text (see the module docstring). Runs in the worker."""
    environment = _HTML if html else _TEXT
    try:
        compiled = environment.from_string(source)
    except TemplateSyntaxError as exc:
        return _refused(f"line {exc.lineno}: {exc.message}")
    except RecursionError:
        # the parser and compiler recurse once per nesting level: ((((...)))) exhausts them
        return _refused("nested too deeply to compile")
    except MemoryError:
        return _refused("memory", "memory")
    render = _Render()
    token = _CURRENT.set(render)
    pieces: list[str] = []
    size = 0
    try:
        for chunk in compiled.generate(dict(values)):
            size += len(chunk)
            if size > max_chars:
                return _refused(f"renders more than {max_chars} characters", "output")
            pieces.append(chunk)
        text = "".join(pieces)
    except MemoryError:
        pieces.clear()
        return _refused("memory", "memory")
    except SecurityError as exc:
        return _refused(f"not allowed: {first_line(exc)}")
    except TemplateError as exc:
        return _refused(first_line(exc))
    # Tenant code can raise anything Python can (ZeroDivisionError, RecursionError from a
    # macro calling itself, ...): at this boundary every failure becomes a refusal.
    except Exception as exc:
        return _refused(f"{type(exc).__name__}: {first_line(exc)}")
    finally:
        _CURRENT.reset(token)
    return {"text": text, "missing": sorted(set(render.missing))}


READY = b"R"
"""The byte a worker writes once it can render."""


def serve(memory_mib: int) -> None:
    """The worker: answer requests from standard input until it ends (see the module
    docstring). The caller measures the wall clock and kills a worker that overruns."""
    if memory_mib:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mib * MIB, memory_mib * MIB))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # The CPU timer's signal must end the process: an ignored or blocked SIGPROF would
    # be inherited from whoever started it.
    signal.signal(signal.SIGPROF, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGPROF})
    # A Ctrl-C at the service's terminal reaches this process too: the service decides
    # when it ends (end of input), so a render in progress during a graceful stop finishes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Calls come first: a render gets what CPU the service leaves.
    os.nice(10)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies on the pipe
    # Ready: the caller's clock for a render starts after this, not while Python starts.
    replies.write(READY)
    replies.flush()
    while True:
        header = requests.read(4)
        if len(header) < 4:
            return
        request = requests.read(int.from_bytes(header, "big"))
        cpu, source, html, values, max_chars = pickle.loads(request)
        if cpu:
            signal.setitimer(signal.ITIMER_PROF, cpu)
        try:
            reply = render_text(source, values, html=html, max_chars=max_chars)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
        # ASCII JSON: a lone surrogate a template made still travels.
        data = json.dumps(reply).encode("ascii")
        replies.write(len(data).to_bytes(4, "big") + data)
        replies.flush()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
