"""The outbound address guard: which addresses webhooks may reach, and the resolver that enforces it."""

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from origin.egress import EgressRefused, PublicOnlyResolver, is_private_address, parse_address, private_host, refusal


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",  # CGNAT shared space
        "100.127.255.255",
        "169.254.169.254",  # cloud metadata
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.10",  # documentation
        "::1",
        "::",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2001:db8::1",  # documentation
    ],
)
def test_off_limits_addresses(address):
    assert is_private_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.1", "172.32.0.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"],
)
def test_public_addresses(address):
    assert not is_private_address(ipaddress.ip_address(address))


def test_url_hosts():
    for host in ("localhost", "LOCALHOST.", "api.localhost", "127.0.0.1", "[::1]", "::ffff:127.0.0.1"):
        assert private_host(host), host
    for host in ("127.1", "2130706433", "0x7f.0.0.1", "0"):  # numeric forms sockets take as 127.0.0.1 / 0.0.0.0
        assert private_host(host), host
    for host in ("example.com", "8.8.8.8", "2001:4860:4860::8888", "localhost.example.com"):
        assert not private_host(host), host
    assert parse_address("example.com") is None and parse_address("[::1]") == ipaddress.ip_address("::1")


class FixedResolver(AbstractResolver):
    """Resolves every name to fixed addresses: what a hostile or rebound DNS record would say."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.closed = False

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=socket.AI_NUMERICHOST)
            for a in self.addresses
        ]

    async def close(self) -> None:
        self.closed = True


async def test_the_resolver_drops_private_addresses():
    resolver = PublicOnlyResolver(FixedResolver("10.0.0.7", "93.184.215.14", "::1", "2606:2800:21f:cb07::1"))
    got = await resolver.resolve("cms.example.test", 443)
    assert [r["host"] for r in got] == ["93.184.215.14", "2606:2800:21f:cb07::1"]
    await resolver.close()
    assert resolver.inner.closed


async def test_a_name_with_only_private_addresses_is_refused():
    resolver = PublicOnlyResolver(FixedResolver("127.0.0.1", "169.254.169.254", "127.0.0.1"))
    with pytest.raises(EgressRefused) as err:
        await resolver.resolve("example.test", 80)
    assert str(err.value) == "example.test resolves only to private addresses (127.0.0.1, 169.254.169.254)"
    wrapped = ConnectionError("wrapper")
    wrapped.__cause__ = err.value
    assert refusal(wrapped) is err.value and refusal(ConnectionError("other")) is None


async def test_the_default_resolver_refuses_localhost():
    with pytest.raises(EgressRefused, match=r"^localhost resolves only to private addresses \(.*127\.0\.0\.1"):
        await PublicOnlyResolver().resolve("localhost", 80, socket.AF_INET)
