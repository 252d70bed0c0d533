"""The SSRF guard: which URLs the product may POST webhooks to.

A webhook makes the server send a request to a URL someone typed, so that URL must not reach what
only the server can reach: its own loopback, the private network, the cloud's link-local metadata
service (169.254.169.254). The rules (OWASP's SSRF prevention cheat sheet):

- the scheme is ``https`` (``http`` only with ``settings.WEBHOOKS_ALLOW_HTTP``);
- the URL has a host and no user name or password, and is a valid URL (Django's ``URLValidator``);
- the host resolves, and every address it resolves to is public (``ipaddress``'s ``is_global``, and
  not multicast); an IPv4 address mapped into IPv6 is judged as the IPv4 address. Private, loopback,
  link-local, shared (100.64/10), reserved and unspecified addresses are refused unless
  ``settings.WEBHOOKS_ALLOW_PRIVATE`` is on (tests, on-premises receivers).

The check runs when an endpoint is saved and again before each attempt, since a name can be
pointed elsewhere later. Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from .errors import EndpointUrlRefused


def _address_refused(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def endpoint_url_check(url: str) -> str:
    """Check ``url`` against the guard's rules and return it unchanged.

    Raises:
        EndpointUrlRefused: (``param`` ``url``) the message says which rule refused it.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EndpointUrlRefused(f"url is not a valid URL: {exc}") from None
    allowed = ("https", "http") if settings.WEBHOOKS_ALLOW_HTTP else ("https",)
    if parts.scheme not in allowed:
        raise EndpointUrlRefused(f"url must start with {' or '.join(s + '://' for s in allowed)}, got {url!r}")
    if not parts.hostname:
        raise EndpointUrlRefused("url has no host")
    if parts.username is not None or parts.password is not None:
        raise EndpointUrlRefused("url must not carry a user name or password")
    try:
        URLValidator(schemes=list(allowed))(url)
    except ValidationError:
        raise EndpointUrlRefused(f"url is not a valid URL: {url[:200]!r}") from None
    if settings.WEBHOOKS_ALLOW_PRIVATE:
        return url
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise EndpointUrlRefused(f"url's host {parts.hostname} does not resolve ({exc})") from None
    refused = sorted({info[4][0] for info in infos if _address_refused(info[4][0])})
    if refused:
        raise EndpointUrlRefused(
            f"url's host {parts.hostname} resolves to a private, loopback or link-local address "
            f"({', '.join(refused)}); such receivers are allowed only with WEBHOOKS_ALLOW_PRIVATE"
        )
    return url
