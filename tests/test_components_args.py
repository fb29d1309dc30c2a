"""The components' typed args refuse bad input on construction: a clear ValueError or
TypeError naming the field and the fix, never a string split into characters."""

from __future__ import annotations

import pulumi
import pytest

from kindmesh.components.cilium_release import CiliumReleaseArgs
from kindmesh.components.cluster_target import ClusterTarget, after_list
from kindmesh.components.kind_cluster import KindClusterArgs
from kindmesh.components.mesh import MeshArgs
from kindmesh.components.mesh_connection import MeshConnectionArgs, MeshMember
from kindmesh.components.mesh_demo import MeshDemoArgs
from kindmesh.components.metallb_pool import MetalLBPoolArgs


class FakeResource(pulumi.Resource):
    """A resource object that is never registered (no engine needed)."""

    def __init__(self) -> None:  # noqa: D107 - deliberately skips Resource.__init__
        pass


TARGET = ClusterTarget(provider=None, kubeconfig="k")  # type: ignore[arg-type]


def kind(**kw):
    base = dict(kind_name="solo", network="solo-net", pod_subnet="10.40.0.0/16", service_subnet="10.41.0.0/20")
    return KindClusterArgs(**{**base, **kw})


def cilium(**kw):
    return CiliumReleaseArgs(**{**dict(target=TARGET, cluster_name="us", cluster_id=1), **kw})


PEER = {"name": "eu", "port": 2379, "ips": ["172.30.255.1"]}
CA = dict(ca_cert_b64="Y2VydA==", ca_key_b64="a2V5")


@pytest.mark.parametrize("kw, error, words", [
    (dict(kind_name="Solo"), ValueError, "KindClusterArgs.kind_name"),
    (dict(kind_name="a_b"), ValueError, "KindClusterArgs.kind_name"),
    (dict(kind_name="x" * 49), ValueError, "at most 48"),
    (dict(workers=True), TypeError, "KindClusterArgs.workers"),
    (dict(workers="1"), TypeError, "KindClusterArgs.workers"),
    (dict(workers=-1), ValueError, "KindClusterArgs.workers"),
    (dict(pod_subnet="10.40.0.1/16"), ValueError, "KindClusterArgs.pod_subnet"),
    (dict(service_subnet="fd00::/64"), ValueError, "KindClusterArgs.service_subnet"),
    (dict(pod_subnet="nope"), ValueError, "KindClusterArgs.pod_subnet"),
    (dict(network=pulumi.Output.from_input("net")), TypeError, "pass the name string"),
    (dict(images="nginx:1.27"), TypeError, "images=['nginx:1.27']"),
    (dict(after="network"), TypeError, "KindClusterArgs.after"),
    (dict(images_after="host-images"), TypeError, "KindClusterArgs.images_after"),
])
def test_kind_cluster_args_refuse(kw, error, words):
    with pytest.raises(error) as err:
        kind(**kw)
    assert words in str(err.value)


def test_kind_cluster_args_accept_kinds_own_names():
    assert kind(kind_name="km--a.b-1", workers=0).kind_name == "km--a.b-1"


@pytest.mark.parametrize("kw, error, words", [
    (dict(cluster_id=True), TypeError, "CiliumReleaseArgs.cluster_id"),
    (dict(cluster_id="1"), TypeError, "CiliumReleaseArgs.cluster_id"),
    (dict(cluster_id=0), ValueError, "1..255"),
    (dict(cluster_id=256), ValueError, "1..255"),
    (dict(cluster_name="default"), ValueError, "reserved"),
    (dict(values=pulumi.Output.from_input({})), TypeError, "must be plain"),
    (dict(values=[("a", 1)]), TypeError, "CiliumReleaseArgs.values"),
    (dict(peers=PEER, **CA), TypeError, "CiliumReleaseArgs.peers"),
    (dict(peers=["eu"], **CA), TypeError, "CiliumReleaseArgs.peers[0]"),
    (dict(peers=[{"name": "eu"}], **CA), ValueError, "missing port, ips"),
    (dict(peers=[{**PEER, "name": "us"}], **CA), ValueError, "its own peer"),
    (dict(peers=[PEER]), ValueError, "shared CA"),
    (dict(ca_cert_b64="x"), ValueError, "both"),
    (dict(after=["x"]), TypeError, "CiliumReleaseArgs.after[0]"),
])
def test_cilium_release_args_refuse(kw, error, words):
    with pytest.raises(error) as err:
        cilium(**kw)
    assert words in str(err.value)


def test_cilium_release_args_accept_peers_with_a_ca():
    assert cilium(peers=[PEER], **CA).peers == [PEER]


@pytest.mark.parametrize("kw, error, words", [
    (dict(addresses="172.30.255.240-172.30.255.254"), TypeError, "addresses=['172.30.255.240-172.30.255.254']"),
    (dict(addresses=[]), ValueError, "at least one range"),
    (dict(addresses=["a", 1]), TypeError, "MetalLBPoolArgs.addresses[1]"),
    (dict(addresses=["a"], after=42), TypeError, "MetalLBPoolArgs.after"),
    (dict(addresses=["10.0.0.0/28"], reserved="10.0.0.1"), TypeError, "reserved=['10.0.0.1']"),
    (dict(addresses=["10.0.0.0/28"], reserved=["10.0.0.300"]), ValueError, "reserved[0]: '10.0.0.300' is not"),
    (dict(addresses=["10.0.0.0/28"], reserved=["10.0.1.1"]), ValueError, "10.0.1.1 is not inside addresses"),
    (dict(addresses=["10.0.0.0/28"], reserved=["10.0.0.1"], reserved_pool_name="kindmesh-pool"), ValueError,
     "reserved_pool_name"),
    (dict(addresses=["a"], cni=["cilium"]), TypeError, "MetalLBPoolArgs.cni[0]"),
])
def test_metallb_pool_args_refuse(kw, error, words):
    with pytest.raises(error) as err:
        MetalLBPoolArgs(target=TARGET, cluster_name="us", **kw)
    assert words in str(err.value)


@pytest.mark.parametrize("member, error, words", [
    (lambda: MeshMember("b", "10.0.0.2"), TypeError, "ips=['10.0.0.2']"),
    (lambda: MeshMember("b", []), ValueError, "at least one address"),
    (lambda: MeshMember("b", ["10.0.0.300"]), ValueError, "not an IP address"),
    (lambda: MeshMember("b", [167772162]), ValueError, "not an IP address"),
    (lambda: MeshMember("B", ["10.0.0.2"]), ValueError, "DNS label"),
    (lambda: MeshMember("b", ["10.0.0.2"], port=0), ValueError, "port"),
    (lambda: MeshMember("b", ["10.0.0.2"], id=True), TypeError, "id"),
])
def test_mesh_member_refuses(member, error, words):
    with pytest.raises(error) as err:
        member()
    assert words in str(err.value)


A, B, C = (MeshMember(n, [f"10.0.0.{i}"], id=i) for i, n in enumerate("abc", 1))


@pytest.mark.parametrize("kw, error, words", [
    (dict(members=[A, {"name": "b"}]), TypeError, "members[1]: expected a MeshMember"),
    (dict(members=[A, MeshMember("b", ["10.0.0.2"], id=1)]), ValueError, "id(s) [1] used twice"),
    (dict(members=[A, B, A]), ValueError, "duplicate names"),
    (dict(members=[A, B], links=["a<->b"]), ValueError, "write ('a', 'b')"),
    (dict(members=[A, B], links="ab"), TypeError, "MeshConnectionArgs.links"),
    (dict(members=[A, B], links=[("a", "c")]), ValueError, "does not join two members"),
    (dict(members=[A, B], links=[("a", "b", "c")]), ValueError, "2-tuple"),
])
def test_mesh_connection_args_refuse(kw, error, words):
    with pytest.raises(error) as err:
        MeshConnectionArgs(**kw)
    assert words in str(err.value)


def test_mesh_member_ips_stay_whole_addresses():
    assert MeshMember("b", ["10.0.0.2", "10.0.0.3"]).ips == ("10.0.0.2", "10.0.0.3")


@pytest.mark.parametrize("after, expected", [(None, 0), ("one", 1), ("list", 2), ("tuple", 1)])
def test_after_takes_one_resource_or_a_sequence_everywhere(after, expected):
    r1, r2 = FakeResource(), FakeResource()
    value = {None: None, "one": r1, "list": [r1, r2], "tuple": (r2,)}[after]
    assert len(after_list(value, "x")) == expected
    kind(after=value if value is not None else (), images_after=value if value is not None else ())
    cilium(after=value)
    MetalLBPoolArgs(target=TARGET, cluster_name="us", addresses=["a"], after=value, cni=value)
    MeshDemoArgs(target=TARGET, manifests=[{"kind": "Namespace"}], after=value)


def test_mesh_args_config_must_be_a_mapping():
    with pytest.raises(TypeError, match="MeshArgs.config"):
        MeshArgs(config="clusters: []")  # type: ignore[arg-type]
