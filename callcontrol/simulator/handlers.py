"""The registry of ARI operation implementations, keyed ``resource.nickname``.

An implementation takes the engine and the parsed parameters and returns the response
body (a model's JSON, a list of them, a :class:`~.model.FileBody` for a file, or None for
204). It raises
:class:`~.engine.RequestError` for what Asterisk refuses. :func:`handlers` checks at
start-up that every declared operation is implemented and nothing else is: a typo fails
loudly, not at the first request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from callcontrol.simulator.engine import Asterisk
from callcontrol.simulator.params import Args

Handler = Callable[[Asterisk, Args], Any]
_REGISTRY: dict[str, Handler] = {}


def implements(key: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the implementation of operation ``key``."""

    def register(function: Handler) -> Handler:
        if key in _REGISTRY:
            raise RuntimeError(f"operation {key} implemented twice")
        _REGISTRY[key] = function
        return function

    return register


def handlers() -> dict[str, Handler]:
    """Every implementation, checked against the declared operations."""
    from callcontrol.simulator import handlers_channels, handlers_resources  # noqa: F401
    from callcontrol.simulator.apidocs import OPERATIONS

    declared = {operation.key for operation in OPERATIONS if not operation.websocket}
    missing = declared - _REGISTRY.keys()
    unknown = _REGISTRY.keys() - declared
    if missing or unknown:
        raise RuntimeError(
            f"operations not implemented: {sorted(missing)}; undeclared: {sorted(unknown)}"
        )
    return dict(_REGISTRY)
