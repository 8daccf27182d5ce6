"""Where a participant's webhook may point: checked when the URL is saved and again, after DNS
resolution, on every connection a delivery opens (server-side request forgery guard).

A target is refused when

* its scheme is not ``https`` (``http`` too while ``CLEARHOUSE_WEBHOOK_REQUIRE_HTTPS`` is off:
  tests and the demo), or it carries credentials (``user:pass@``);
* any address its host resolves to is not a public unicast address: loopback, private ranges,
  link-local (the cloud metadata service at 169.254.169.254), carrier-grade NAT, multicast,
  reserved, unspecified, and the IPv4 forms of those inside IPv6 (``::ffff:127.0.0.1``).

``CLEARHOUSE_WEBHOOK_ALLOWED_HOSTS`` lists host names and networks (CIDR) that are allowed anyway
(a test receiver on 127.0.0.1, the demo). The delivery connects to the very address it checked
(no second lookup an attacker's DNS could answer differently) and never follows redirects.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookTargetRefused(Exception):
    """The URL or an address it resolves to is not an allowed webhook target."""


def _allowed_entries() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    hosts: set[str] = set()
    networks = []
    for entry in settings.CLEARHOUSE_WEBHOOK_ALLOWED_HOSTS:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry.lower().rstrip("."))
    return hosts, networks


def _forbidden_reason(address: Address) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for flag, reason in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_private", "a private address"),
        ("is_multicast", "a multicast address"),
        ("is_unspecified", "the unspecified address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(address, flag):
            return reason
    if not address.is_global:
        return "not a public address"
    return ""


def _address_check(host: str, address: Address) -> None:
    allowed_hosts, allowed_networks = _allowed_entries()
    if host.lower().rstrip(".") in allowed_hosts or any(address in network for network in allowed_networks):
        return
    reason = _forbidden_reason(address)
    if reason:
        raise WebhookTargetRefused(f"{host} resolves to {address}, {reason}")


def _resolve(host: str, port: int) -> list[Address]:
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookTargetRefused(f"{host} does not resolve") from exc
    # getaddrinfo yields (family, type, proto, canonname, sockaddr); sockaddr[0] is the address
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise WebhookTargetRefused(f"{host} does not resolve")
    return addresses


def webhook_target_address(host: str, port: int) -> str:
    """The address to connect to for ``host``: every address it resolves to must be allowed
    (one bad answer refuses the host), and the first is used."""
    addresses = _resolve(host, port)
    for address in addresses:
        _address_check(host, address)
    return str(addresses[0])


def webhook_url_check(url: str) -> None:
    """Raise ``WebhookTargetRefused`` unless ``url`` is an allowed webhook target (resolves it)."""
    parts = urlsplit(url)
    schemes = {"https"} if settings.CLEARHOUSE_WEBHOOK_REQUIRE_HTTPS else {"https", "http"}
    if parts.scheme.lower() not in schemes:
        raise WebhookTargetRefused(f"the scheme must be {' or '.join(sorted(schemes))}")
    if parts.username is not None or parts.password is not None:
        raise WebhookTargetRefused("credentials in the URL are not allowed")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:
        raise WebhookTargetRefused("the port is not valid") from exc
    if not parts.hostname:
        raise WebhookTargetRefused("the URL has no host")
    webhook_target_address(parts.hostname, port)


def validate_webhook_url(value: str) -> None:
    """Model field validator of ``Participant.webhook_url`` (the admin form runs it at save)."""
    if not value:
        return
    try:
        webhook_url_check(value)
    except WebhookTargetRefused as exc:
        raise ValidationError(f"Not an allowed webhook target: {exc}.", code="webhook_target") from exc


# --- the transport: every new connection re-checks the address it is about to connect to -----------


class _GuardedConnectionMixin:
    _dns_host: str
    port: int

    def _new_conn(self) -> socket.socket:
        host = self._dns_host
        self._dns_host = webhook_target_address(host, self.port)  # connect to the checked address
        try:
            return super()._new_conn()  # type: ignore[misc]
        finally:
            self._dns_host = host  # the TLS handshake verifies the certificate of the host name


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def webhook_post(url: str, *, data: bytes, headers: dict[str, str], timeout: float) -> requests.Response:
    """POST to an allowed target: the URL is checked, every connection re-checks its resolved
    address, no redirect is followed and no proxy from the environment is used. The body of the
    answer is not read (``stream=True``); the caller looks at the status only."""
    webhook_url_check(url)
    with requests.Session() as session:
        session.trust_env = False
        session.mount("http://", _GuardedAdapter())
        session.mount("https://", _GuardedAdapter())
        response = session.post(url, data=data, headers=headers, timeout=timeout, allow_redirects=False, stream=True)
        response.close()
        return response
