"""Channel variables and the dialplan functions the service reads or writes through
``GET``/``POST /channels/{channelId}/variable``.

Functions: ``CALLERID(num|name|all)`` (writing changes the channel's caller and emits
ChannelCallerId), ``CHANNEL(pjsip,remote_addr)`` (the simulated source address as
``ip:port``), ``CHANNEL(language|name|state|uniqueid)``. Any other name is a plain
variable: writing it emits ChannelVarset; reading one never set is 404, as in Asterisk.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from callcontrol.simulator.engine import RequestError
from callcontrol.simulator.model import Channel

if TYPE_CHECKING:
    from callcontrol.simulator.engine import Asterisk


def remote_addr(source: str) -> str:
    """``source`` as PJSIP shows a remote address: ``ip:port`` (``[v6]:port``),
    port 5060 when none is given."""
    if not source:
        return ""
    try:
        address = ipaddress.ip_address(source.strip("[]"))
    except ValueError:
        return source
    return f"[{address}]:5060" if address.version == 6 else f"{address}:5060"


def get_variable(channel: Channel, variable: str) -> str:
    """The value of ``variable`` on ``channel``; 404 when it has none."""
    name = variable.replace(" ", "")
    functions = {
        "CALLERID(num)": channel.caller.number,
        "CALLERID(name)": channel.caller.name,
        "CALLERID(all)": f'"{channel.caller.name}" <{channel.caller.number}>',
        "CHANNEL(pjsip,remote_addr)": remote_addr(channel.source_address),
        "CHANNEL(language)": channel.language,
        "CHANNEL(name)": channel.name,
        "CHANNEL(state)": str(channel.state),
        "CHANNEL(uniqueid)": channel.id,
    }
    if name in functions:
        return functions[name]
    if variable in channel.variables:
        return channel.variables[variable]
    raise RequestError(404, "Provided variable was not found")


def set_variable(asterisk: Asterisk, channel: Channel, variable: str, value: str) -> None:
    """Set ``variable``: CALLERID() changes the caller (ChannelCallerId), CHANNEL(language)
    the language, anything else is stored and announced by ChannelVarset."""
    name = variable.replace(" ", "")
    if name in ("CALLERID(num)", "CALLERID(name)"):
        if name == "CALLERID(num)":
            channel.caller.number = value
        else:
            channel.caller.name = value
        asterisk.emit(
            channel,
            "ChannelCallerId",
            caller_presentation=0,
            caller_presentation_txt="Presentation Allowed, Not Screened",
        )
        return
    if name.startswith(("CALLERID(", "CHANNEL(")) and name != "CHANNEL(language)":
        raise RequestError(400, f"Unable to set variable '{variable}'")
    if name == "CHANNEL(language)":
        channel.language = value
        return
    channel.variables[variable] = value
    asterisk.emit(channel, "ChannelVarset", variable=variable, value=value)
