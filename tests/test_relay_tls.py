"""Hubble Relay serves TLS with certificates from the mesh CA (issue 24, item 8).

The real charts (1.19.6 and 1.20.0), rendered by the real helm with the stack's values and a
CA made here in the shape MeshCA gives (RSA, base64 PEM): the relay's server TLS is on, the
1.20 chart's NOTES carry no "TLS is not enabled for the Hubble Relay server", and every Hubble
certificate chains to the CA passed in ``tls.ca``.
"""

from __future__ import annotations

import base64
import datetime
import functools
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kindmesh.core.planner import load_plan
from kindmesh.core.render import RELAY_TLS_SERVER_NAME, cilium_values, kind_cilium_values, relay_access
from kindmesh.core.versions import CILIUM
from tests.helm_render import Rendered, render_cilium
from tests.helpers import stack_raw

VERSIONS = [v for line in CILIUM.values() for v in line.validated]
WARNING = "TLS is not enabled for the Hubble Relay server"


@functools.cache
def mesh_ca() -> tuple[x509.Certificate, tuple[str, str]]:
    """A CA like MeshCA's: RSA 2048, PKCS#1 key; returned with its (cert_b64, key_b64)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kindmesh test mesh CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    return cert, (base64.b64encode(cert_pem).decode(), base64.b64encode(key_pem).decode())


def stack_values(version: str) -> dict[str, Any]:
    """The dev stack's first cluster on ``version``, meshed (peers and the shared CA)."""
    raw = stack_raw("dev")
    raw["cilium"] = dict(raw.get("cilium") or {}, version=version)
    plan = load_plan(raw, stack="dev")
    cluster = plan.clusters[0]
    assert plan.cilium_version(cluster) == version
    return cilium_values(plan, cluster, peers=plan.peer_entries(cluster.name), ca=mesh_ca()[1])


@functools.cache
def rendered(version: str) -> Rendered:
    return render_cilium(version, stack_values(version))


def _cert(secret: dict[str, Any], key: str = "tls.crt") -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"][key]))


@pytest.mark.parametrize("version", VERSIONS)
def test_the_values_turn_relay_server_tls_on(version):
    values = stack_values(version)
    assert values["hubble"]["tls"] == {"enabled": True, "auto": {"enabled": True, "method": "helm"}}
    assert values["hubble"]["relay"]["tls"] == {"server": {"enabled": True}}
    assert relay_access(values) == {"port": 443, "tls": True, "mtls": False, "serverName": RELAY_TLS_SERVER_NAME}
    assert kind_cilium_values(control_plane="c")["hubble"]["relay"]["tls"] == {"server": {"enabled": True}}


def test_relay_access_follows_the_values_the_chart_gets():
    assert relay_access({"hubble": {"enabled": False, "relay": {"enabled": True}}}) is None
    assert relay_access({"hubble": {"enabled": True, "relay": {"enabled": False}}}) is None
    plain = relay_access({"hubble": {"enabled": True, "relay": {"enabled": True}}})
    assert plain == {"port": 80, "tls": False, "mtls": False, "serverName": None}
    mtls = relay_access({"hubble": {"enabled": True, "relay": {"enabled": True, "servicePort": 4245,
                                                               "tls": {"server": {"enabled": True, "mtls": True}}}}})
    assert mtls == {"port": 4245, "tls": True, "mtls": True, "serverName": RELAY_TLS_SERVER_NAME}
    # relay server TLS needs Hubble's TLS: the chart then serves plaintext on 443
    off = relay_access({"hubble": {"enabled": True, "tls": {"enabled": False},
                                   "relay": {"enabled": True, "tls": {"server": {"enabled": True}}}}})
    assert off == {"port": 443, "tls": False, "mtls": False, "serverName": None}


@pytest.mark.parametrize("version", VERSIONS)
def test_the_chart_renders_the_relay_serving_tls_without_the_warning(version):
    out = rendered(version)
    assert WARNING not in out.notes, out.notes
    config = out.get("ConfigMap", "hubble-relay-config")["data"]["config.yaml"]
    assert "tls-relay-server-cert-file:" in config and "disable-server-tls" not in config, config
    assert "disable-client-tls" not in config  # the relay talks TLS to the agents' Hubble servers too
    ports = out.get("Service", "hubble-relay")["spec"]["ports"]
    assert [p["port"] for p in ports] == [relay_access(stack_values(version))["port"]] == [443]


def test_the_1_20_chart_warns_when_relay_tls_is_off():
    """The check above can fail: the same render with the relay's server TLS off warns."""
    values = stack_values("1.20.0")
    values["hubble"]["relay"]["tls"] = {"server": {"enabled": False}}
    assert WARNING in render_cilium("1.20.0", values).notes


@pytest.mark.parametrize("version", VERSIONS)
def test_every_hubble_certificate_chains_to_the_mesh_ca(version):
    out = rendered(version)
    ca, _ = mesh_ca()
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    assert not out.has("Secret", "cilium-ca") or base64.b64decode(out.get("Secret", "cilium-ca")["data"]["ca.crt"]) \
        == ca_pem
    names = {
        "hubble-relay-server-certs": "*.hubble-relay.cilium.io",
        "hubble-relay-client-certs": "*.hubble-relay.cilium.io",
        "hubble-server-certs": "*.us.hubble-grpc.cilium.io",
        "hubble-ui-client-certs": "*.hubble-ui.cilium.io",
    }
    for secret_name, dns in names.items():
        secret = out.get("Secret", secret_name)
        assert base64.b64decode(secret["data"]["ca.crt"]) == ca_pem, secret_name
        leaf = _cert(secret)
        leaf.verify_directly_issued_by(ca)  # raises unless our CA signed it
        assert leaf.issuer == ca.subject, secret_name
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert dns in sans.get_values_for_type(x509.DNSName), (secret_name, sans)
    # the name a client asks the relay for is covered by the relay's wildcard certificate
    assert RELAY_TLS_SERVER_NAME.split(".", 1)[1] == "hubble-relay.cilium.io"
    # the agents' Hubble server certificate also authenticates clients (verify uses it against mTLS)
    usage = _cert(out.get("Secret", "hubble-server-certs")).extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage and ExtendedKeyUsageOID.SERVER_AUTH in usage


@pytest.mark.parametrize("version", VERSIONS)
def test_the_agents_mount_the_ca_verify_trusts(version):
    """verify runs the hubble CLI in the agent with /var/lib/cilium/tls/hubble/client-ca.crt: the CA."""
    ds = rendered(version).get("DaemonSet", "cilium")
    volume = next(v for v in ds["spec"]["template"]["spec"]["volumes"] if v["name"] == "hubble-tls")
    items = {i["path"]: (s["secret"]["name"], i["key"]) for s in volume["projected"]["sources"] if "secret" in s
             for i in s["secret"]["items"]}
    assert items["client-ca.crt"] == ("hubble-server-certs", "ca.crt")
    assert items["server.crt"] == ("hubble-server-certs", "tls.crt")
    agent = next(c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "cilium-agent")
    assert {"name": "hubble-tls", "mountPath": "/var/lib/cilium/tls/hubble", "readOnly": True} in agent["volumeMounts"]
