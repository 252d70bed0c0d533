"""The SSRF guard: https only, and no private, loopback or link-local receiver, unless settings allow."""

from __future__ import annotations

import pytest

from webhooks.errors import EndpointUrlRefused, UnknownEventType
from webhooks.guard import endpoint_url_check
from webhooks.models import Endpoint
from webhooks.services import endpoint_create


@pytest.fixture
def production(settings):
    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    return settings


@pytest.mark.parametrize(("url", "reason"), [
    ("http://93.184.215.14/hooks", "must start with https://"),
    ("ftp://93.184.215.14/hooks", "must start with https://"),
    ("https:///hooks", "no host"),
    ("https://user:secret@93.184.215.14/", "user name or password"),
    ("https://127.0.0.1/hooks", "127.0.0.1"),
    ("https://localhost:8443/hooks", "loopback"),
    ("https://10.1.2.3/hooks", "10.1.2.3"),
    ("https://192.168.0.10/hooks", "192.168.0.10"),
    ("https://172.16.5.4/hooks", "172.16.5.4"),
    ("https://100.64.0.1/hooks", "100.64.0.1"),  # shared address space (carrier-grade NAT)
    ("https://169.254.169.254/latest/meta-data/", "169.254.169.254"),  # the cloud metadata service
    ("https://[::1]/hooks", "::1"),
    ("https://[fe80::1]/hooks", "fe80::1"),
    ("https://[fd00::5]/hooks", "fd00::5"),
    ("https://[::ffff:127.0.0.1]/hooks", "::ffff:127.0.0.1"),  # IPv4-mapped loopback
    ("https://0.0.0.0/hooks", "0.0.0.0"),
    ("https://224.0.0.1/hooks", "224.0.0.1"),
    ("https://name.invalid/hooks", "does not resolve"),
    ("https://93.184.215.14:99999/", "not a valid URL"),
])
def test_guard_refuses_urls_that_could_reach_the_inside(production, url, reason):
    with pytest.raises(EndpointUrlRefused) as refused:
        endpoint_url_check(url)
    assert reason in refused.value.message
    assert refused.value.param == "url" and refused.value.http_status == 422


def test_guard_accepts_a_public_https_address(production):
    assert endpoint_url_check("https://93.184.215.14:8443/hooks?x=1") == "https://93.184.215.14:8443/hooks?x=1"


def test_guard_settings_allow_http_and_private_receivers(production):
    # given the on-premises settings
    production.WEBHOOKS_ALLOW_HTTP = True
    production.WEBHOOKS_ALLOW_PRIVATE = True
    # then plain http and private addresses pass, other schemes and credentials still do not
    assert endpoint_url_check("http://10.1.2.3:8080/hooks") == "http://10.1.2.3:8080/hooks"
    assert endpoint_url_check("https://127.0.0.1/hooks") == "https://127.0.0.1/hooks"
    for url in ("ftp://10.1.2.3/", "http://u:p@10.1.2.3/"):
        with pytest.raises(EndpointUrlRefused):
            endpoint_url_check(url)


def test_endpoint_create_refuses_a_private_url_and_writes_nothing(production, db):
    with pytest.raises(EndpointUrlRefused):
        endpoint_create(url="https://169.254.169.254/", event_types=["invoice.issued"])
    with pytest.raises(UnknownEventType) as unknown:
        endpoint_create(url="https://93.184.215.14/", event_types=["invoice.issued", "invoice.exploded"])
    assert "invoice.exploded" in unknown.value.message and unknown.value.param == "event_types"
    assert not Endpoint.objects.exists()


def test_endpoint_secret_is_a_standard_webhooks_secret_of_its_own(production, db):
    first = endpoint_create(url="https://93.184.215.14/a", event_types=["invoice.issued"])
    second = endpoint_create(url="https://93.184.215.14/b", event_types=["invoice.issued"])
    assert first.secret.startswith("whsec_") and len(first.secret) == len("whsec_") + 32
    assert first.secret != second.secret
