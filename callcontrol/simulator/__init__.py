"""The simulated Asterisk: ARI (REST + events websocket) for tests, demos and benchmarks.

``Simulator`` serves the subset of Asterisk 22's ARI the service uses, with its own
api-docs, so aioari connects to it unchanged; a control API under ``/_sim`` lets testers
place calls, press keys, hang up, and declare how dialled endpoints answer.
"""

from callcontrol.simulator.calls import CallSpec, Dtmf, place_call
from callcontrol.simulator.server import Simulator
from callcontrol.simulator.settings import Behaviour, SimulatorConfig

__all__ = ["Behaviour", "CallSpec", "Dtmf", "Simulator", "SimulatorConfig", "place_call"]
