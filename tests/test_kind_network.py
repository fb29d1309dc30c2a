"""The stack's docker network takes the daemon's MTU, as kind's own networks do."""

from __future__ import annotations

import functools

import pytest

import tests.mocks as mocks
from kindmesh.stacks.composition import build
from kindmesh.stacks.preflight import HostFacts
from tests.helpers import stack_raw

MTU = "com.docker.network.driver.mtu"


def network_options(monkeypatch, facts):
    monkeypatch.setattr(mocks, "build", functools.partial(build, preflight=lambda plan: facts))
    return mocks.evaluate(stack_raw("dev"), "dev").named("network").inputs["options"]


@pytest.mark.parametrize("facts,want", [
    (HostFacts(mtu=1400), "1400"),  # VPN / cloud host: smaller than Ethernet
    (HostFacts(mtu=9000), "9000"),
    (HostFacts(mtu=1500), None),    # the default: same inputs as before
    (HostFacts(mtu=0), None),       # unknown
    (None, None),                   # under mocks: nothing asked, nothing set
])
def test_network_mtu_follows_the_daemon(monkeypatch, facts, want):
    options = network_options(monkeypatch, facts)
    assert options.get(MTU) == want
    assert options["com.docker.network.bridge.enable_ip_masquerade"] == "true"
