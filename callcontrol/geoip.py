"""The country of a source address, from a MaxMind ``.mmdb`` read with ``geoip2``.

:class:`GeoIp` opens a country, city or enterprise database (GeoIP2 or GeoLite2, or any
database whose records carry ``country.iso_code``) and answers ISO 3166 alpha-2 codes.
:func:`require_geoip` is what the service calls at start: clients that filter by country
need a database, and a service that cannot provide one does not start (DESIGN §3.3).

Lookups are synchronous: the reader is memory-mapped and a lookup takes microseconds, so it
runs on the event loop like any other pure step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import geoip2.database
import geoip2.errors
import geoip2.models
import maxminddb

from dialplan.errors import ConfigError
from dialplan.source_filter import parse_ip

log = logging.getLogger("callcontrol.geoip")

_Lookup = Callable[[str], geoip2.models.Country]
_SHOWN = 5
"""How many client names a start-up error names before "and N more"."""


class GeoIp:
    """An open GeoIP database: ``country(ip)`` answers, never raises for an ordinary miss.

    Opening a file that is missing, unreadable, not a MaxMind database, or a database
    without countries (ASN, ISP...) raises :class:`ConfigError` with one line.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            reader = geoip2.database.Reader(path)
        except OSError as exc:
            raise ConfigError(
                f"geoip_database {path} cannot be opened: {exc.strerror or exc}"
            ) from exc
        except (maxminddb.InvalidDatabaseError, ValueError) as exc:
            raise ConfigError(
                f"geoip_database {path} is not a MaxMind (.mmdb) database: {exc}"
            ) from exc
        self.database_type: str = reader.metadata().database_type
        lookup = _lookup_for(reader, self.database_type)
        if lookup is None:
            reader.close()
            raise ConfigError(
                f"geoip_database {path} is a {self.database_type} database, "
                "not a country, city or enterprise one"
            )
        self._reader: geoip2.database.Reader | None = reader
        self._lookup: _Lookup = lookup

    def country(self, ip: str) -> str | None:
        """The ISO 3166 alpha-2 country of ``ip`` (upper case), or None when it has none.

        None for: a string that is not an IP address; an address that is not globally
        routable (private, loopback, link-local, documentation, CGNAT...), whatever the
        database says about it; an address the database does not know or knows without a
        country; an IPv6 address and an IPv4-only database; a closed database.
        IPv4-mapped IPv6 is looked up as the IPv4 address.
        """
        address = parse_ip(ip)
        if address is None or not address.is_global or self._reader is None:
            return None
        try:
            response = self._lookup(str(address))
        except geoip2.errors.AddressNotFoundError:
            return None
        except ValueError:
            # An IPv6 address asked of an IPv4-only database: a miss like any other.
            return None
        except maxminddb.InvalidDatabaseError as exc:
            # A database damaged on disk: the call is judged without a country (it can
            # still pass by its address) rather than failing the whole pipeline.
            log.error("geoip_database %s: lookup of %s failed: %s", self.path, address, exc)
            return None
        code = response.country.iso_code
        return code.upper() if code else None

    def close(self) -> None:
        """Release the database; later lookups answer None. Closing twice is harmless."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _lookup_for(reader: geoip2.database.Reader, database_type: str) -> _Lookup | None:
    """The reader method that fits ``database_type``: geoip2 refuses ``country()`` on a
    city database (and the reverse), although both carry the country."""
    if "Country" in database_type:
        return reader.country
    if "City" in database_type:
        return reader.city
    if "Enterprise" in database_type:
        return reader.enterprise
    return None


def require_geoip(path: str, clients_relying: Sequence[str]) -> GeoIp | None:
    """The GeoIP database for this service, checked at start.

    ``clients_relying`` names the clients whose filter is on with allowed countries. When
    any does, the database must be configured and open, else :class:`ConfigError` names
    them. A configured database is opened even when no client needs it yet (a wrong path
    is a mistake worth stopping for); none configured and none needed → None.
    """
    names = list(dict.fromkeys(clients_relying))
    if not path.strip():
        if names:
            raise ConfigError(
                f"{_clients(names)} calls by country (GeoIP) but geoip_database is not set"
            )
        return None
    try:
        return GeoIp(path)
    except ConfigError as exc:
        if names:
            raise ConfigError(f"{_clients(names)} calls by country (GeoIP) but {exc}") from exc
        raise


def _clients(names: Sequence[str]) -> str:
    """``client a filters`` / ``clients a, b filter``, naming at most a few."""
    shown = ", ".join(names[:_SHOWN])
    if len(names) > _SHOWN:
        shown += f" and {len(names) - _SHOWN} more"
    return f"client {shown} filters" if len(names) == 1 else f"clients {shown} filter"
