"""Per-request policy checks that need no money: source address (with trusted proxies) and the
model allowlist. Budget lives in budget.py, rate limits in ratelimit.py.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from schemas.events.keys import KeyPolicy
from services.gateway.errors import ModelNotAllowed, SourceIpDenied

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


@lru_cache(maxsize=1024)
def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return parse_networks(cidrs)


@lru_cache(maxsize=4096)
def _address(text: str) -> IPAddress | None:
    """The address in `text` (IPv4-mapped IPv6 as IPv4), None if it is not one; cached, since
    the same peers and forwarded-for hops come back request after request."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


class ClientAddressResolver:
    """The client's address: the peer, unless the peer is a trusted proxy, in which case the
    right-most `X-Forwarded-For` entry that is not itself a trusted proxy."""

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self._trusted = parse_networks(trusted_proxies)

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str | None:
        address = _address(peer) if peer else None
        if address is None or not self._trusted or not _within(address, self._trusted):
            return str(address) if address else None
        for hop in reversed((forwarded_for or "").split(",")):
            candidate = _address(hop)
            if candidate is None:
                break  # garbage: stop believing the header here
            address = candidate
            if not _within(candidate, self._trusted):
                break
        return str(address)


def check_source(policy: KeyPolicy, key_id: str, client_ip: str | None) -> None:
    if not policy.allowed_cidrs:
        return
    address = _address(client_ip) if client_ip else None
    if address is None or not _within(address, _networks(policy.allowed_cidrs)):
        raise SourceIpDenied(
            f"requests from {client_ip or 'an unknown address'} are not allowed for key {key_id} "
            f"(allowed: {', '.join(policy.allowed_cidrs)})"
        )


def model_allowed(model: str, allowed: Iterable[str]) -> bool:
    """Exact match, or a `prefix*` pattern; `models/` (Gemini) is ignored on both sides."""
    name = model.strip().lower().removeprefix("models/")
    for pattern in allowed:
        wanted = pattern.lower().removeprefix("models/")
        if name == wanted or (wanted.endswith("*") and name.startswith(wanted[:-1])):
            return True
    return False


def check_model(policy: KeyPolicy, key_id: str, model: str) -> None:
    if policy.allowed_models and not model_allowed(model, policy.allowed_models):
        raise ModelNotAllowed(
            f"model {model!r} is not allowed for key {key_id}; allowed models: "
            f"{', '.join(policy.allowed_models)}"
        )


__all__ = [
    "ClientAddressResolver",
    "check_model",
    "check_source",
    "model_allowed",
    "parse_networks",
]
