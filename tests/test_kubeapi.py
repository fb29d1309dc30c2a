"""The gates' API access over the `kubernetes` client: kubeconfigs, auth kinds, proxies, faults."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from kindmesh.deploy.kubeapi import (
    ClientSetupError,
    KubeClient,
    KubeconfigError,
    KubeError,
    check_kubeconfig,
    is_loopback,
    proxy_for,
)
from tests.fake_apiserver import FakeApiServer, Reply, closed_port, kubeconfig

B64_JUNK = "not*base64!"


def good(**cluster_extra):
    return yaml.safe_load(kubeconfig({"server": "https://127.0.0.1:6443", **cluster_extra}, {"token": "t"}))


def mutate(fn):
    cfg = good()
    fn(cfg)
    return yaml.safe_dump(cfg)


@pytest.mark.parametrize("text,fault", [
    ("clusters: [\n  - {", "is not valid YAML"),
    ("- a\n- b\n", "is not a mapping (got list)"),
    ("", "is not a mapping (got NoneType)"),
    (mutate(lambda c: c.update(contexts=[])), "has no contexts"),
    (mutate(lambda c: c.pop("current-context")), "has no current-context"),
    (mutate(lambda c: c.update({"current-context": "other"})), "has no context 'other' (it has: kind-km-dev-us)"),
    (mutate(lambda c: c.update(clusters=[])), "names cluster 'kind-km-dev-us', which the kubeconfig does not define"),
    (mutate(lambda c: c.update(users=[])), "names user 'kind-km-dev-us', which the kubeconfig does not define"),
    (mutate(lambda c: c["clusters"][0]["cluster"].pop("server")), "has no valid 'server' URL"),
    (mutate(lambda c: c["clusters"][0]["cluster"].update({"certificate-authority-data": B64_JUNK})),
     "'certificate-authority-data' is not valid base64"),
    (mutate(lambda c: c["clusters"][0]["cluster"].update(
        {"certificate-authority-data": base64.b64encode(b"-----BEGIN CERTIFICATE-----\nxx\n").decode()})),
     "is not a PEM certificate"),
    (mutate(lambda c: c["users"][0]["user"].update({"client-certificate-data": B64_JUNK, "client-key-data": "eA=="})),
     "'client-certificate-data' is not valid base64"),
    (mutate(lambda c: c["users"][0]["user"].update({"client-certificate-data": "eA==", "client-key-data": "eA=="})),
     "are not a valid PEM pair"),
    (mutate(lambda c: c["users"][0]["user"].update({"client-certificate-data": "eA=="})), "needs both"),
    (mutate(lambda c: c["users"][0]["user"].update({"client-certificate": "/nonexistent/c.pem",
                                                    "client-key": "/nonexistent/k.pem"})),
     "cannot read 'client-certificate' '/nonexistent/c.pem'"),
    (mutate(lambda c: c["users"][0]["user"].update({"exec": {"command": "x"}})), "'exec' needs"),
    (mutate(lambda c: c.update(users="nope")), "'users' is not a list"),
])
def test_malformed_kubeconfigs_give_one_clear_error(text, fault):
    with pytest.raises(KubeconfigError) as err:
        KubeClient(text)
    assert fault in str(err.value)
    assert "t\n" not in str(err.value)


def test_a_named_context_is_used_over_current_context():
    cfg = good()
    cfg["clusters"].append({"name": "b", "cluster": {"server": "https://10.0.0.1:6443"}})
    cfg["contexts"].append({"name": "b", "context": {"cluster": "b"}})
    _, name = check_kubeconfig(yaml.safe_dump(cfg), "b")
    assert name == "b"
    client = KubeClient(yaml.safe_dump(cfg), context="b", environ={})
    assert client.server == "https://10.0.0.1:6443"
    client.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.4.5", "localhost", "[::1]", "kind.localhost"])
def test_loopback_servers_bypass_the_environment_proxy(host):
    env = {"HTTPS_PROXY": "http://proxy.corp:3128", "https_proxy": "http://proxy.corp:3128"}
    assert is_loopback(host.strip("[]"))
    assert proxy_for(f"https://{host}:6443", environ=env) is None


def test_other_servers_honour_https_proxy_and_no_proxy_like_kubectl():
    env = {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "10.1.0.0/16,.internal,api.example.org"}
    assert proxy_for("https://203.0.113.9:6443", environ=env) == "http://proxy.corp:3128"
    assert proxy_for("https://10.1.2.3:6443", environ=env) is None  # CIDR
    assert proxy_for("https://k8s.internal:6443", environ=env) is None  # domain suffix
    assert proxy_for("https://api.example.org:443", environ=env) is None
    assert proxy_for("https://203.0.113.9:6443", environ={"https_proxy": "http://low:1"}) == "http://low:1"
    assert proxy_for("http://203.0.113.9:8080", environ=env) is None  # http: HTTP_PROXY, unset here
    assert proxy_for("https://203.0.113.9:6443", environ={}) is None
    # a kubeconfig proxy-url wins, as in kubectl
    assert proxy_for("https://127.0.0.1:6443", "http://explicit:1", environ=env) == "http://explicit:1"


def test_the_client_takes_its_proxy_from_the_environment_only_for_non_loopback(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    loop = KubeClient(kubeconfig({"server": "https://127.0.0.1:6443"}, {"token": "t"}))
    remote = KubeClient(kubeconfig({"server": "https://kube.example:6443"}, {"token": "t"}))
    assert loop.proxy is None and remote.proxy == "http://proxy.corp:3128"
    loop.close()
    remote.close()


def test_a_non_loopback_server_is_reached_through_the_proxy(monkeypatch):
    """The proxy is a loopback listener; the API server name is never resolved or contacted."""
    connects = []

    class Proxy(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_CONNECT(self):  # noqa: N802
            connects.append(self.path)
            self.send_response(502)
            self.end_headers()

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        client = KubeClient(kubeconfig({"server": "https://kube.example.invalid:6443"}, {"token": "t"}))
        with pytest.raises(KubeError) as err:
            client.get("/version", timeout=3)
        client.close()
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert connects == ["kube.example.invalid:6443"]
    assert err.value.status == 0 and "cannot reach https://kube.example.invalid:6443" in err.value.message


def write_plugin(tmp_path, body: str):
    plugin = tmp_path / "kube-login"
    plugin.write_text("#!/bin/sh\n" + body)
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    return str(plugin)


def test_exec_plugin_credentials_are_used(tmp_path):
    cred = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
            "status": {"token": "from-exec-plugin"}}
    plugin = write_plugin(tmp_path, f"cat <<'EOF'\n{json.dumps(cred)}\nEOF\n")
    with FakeApiServer(lambda m, p, b: {"kind": "X"}) as api:
        client = KubeClient(api.kubeconfig(user={"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                                          "command": plugin, "interactiveMode": "Never"}}))
        assert client.get("/version", timeout=3).body == {"kind": "X"}
        client.close()
    headers = {k.lower(): v for k, v in api.seen[0].headers.items()}
    assert headers["authorization"] == "Bearer from-exec-plugin"


def test_a_failing_exec_plugin_is_a_clear_kubeconfig_error(tmp_path):
    plugin = write_plugin(tmp_path, "echo 'error: SSO session expired, run: aws sso login' >&2\nexit 1\n")
    kc = kubeconfig({"server": "https://127.0.0.1:6443"},
                    {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": plugin}})
    with pytest.raises(KubeconfigError) as err:
        KubeClient(kc)
    assert "exec plugin" in str(err.value) and "SSO session expired" in str(err.value)


def test_client_certificate_files_and_tls_verification(tmp_path):
    with FakeApiServer(lambda m, p, b: {"kind": "X"}, tls=True) as api:
        cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
        cert.write_bytes(api.certs.client_cert_pem)
        key.write_bytes(api.certs.client_key_pem)
        os.chmod(key, 0o600)
        client = KubeClient(api.kubeconfig(user={"client-certificate": str(cert), "client-key": str(key)}))
        assert client.get("/version", timeout=3).status == 200
        client.close()
        assert api.seen[-1].client_cert
        # without the CA the server's certificate is not trusted: a transport fault, not a crash
        untrusted = KubeClient(kubeconfig({"server": api.url}, {"token": "t"}))
        with pytest.raises(KubeError) as err:
            untrusted.get("/version", timeout=3)
        untrusted.close()
        assert err.value.status == 0 and "CERTIFICATE_VERIFY_FAILED" in err.value.message
        insecure = KubeClient(kubeconfig({"server": api.url, "insecure-skip-tls-verify": True}, {"token": "t"}))
        assert insecure.get("/version", timeout=3).status == 200
        insecure.close()


def test_error_replies_keep_the_status_and_the_servers_message():
    def route(method, path, body):
        if path == "/html":
            return Reply(500, b"<html>oops</html>")
        return Reply(404, {"kind": "Status", "code": 404, "reason": "NotFound",
                           "message": 'daemonsets.apps "missing" not found'})

    with FakeApiServer(route) as api:
        client = KubeClient(api.kubeconfig())
        with pytest.raises(KubeError) as err:
            client.get("/apis/apps/v1/namespaces/kube-system/daemonsets/missing", timeout=3)
        assert (err.value.status, err.value.reason) == (404, "NotFound") and "not found" in err.value.message
        with pytest.raises(KubeError) as err:
            client.get("/html", timeout=3)
        assert err.value.status == 500 and "non-JSON reply: <html>oops</html>" in err.value.message
        client.close()


def test_watch_lists_then_watches_from_the_listed_version():
    def route(method, path, body):
        if "watch=true" in path:
            return Reply(stream=[(0, b'{"type":"MODIFIED",'), (0.05, b'"object":{}}\n')])
        return {"kind": "EndpointSliceList", "metadata": {"resourceVersion": "4711"}, "items": []}

    with FakeApiServer(route) as api:
        client = KubeClient(api.kubeconfig())
        assert client.wait_for_change("/apis/discovery.k8s.io/v1/namespaces/metallb-system/endpointslices", 5)
        client.close()
    list_req, watch_req = api.seen[-2:]
    assert "watch" not in list_req.path
    assert "watch=true" in watch_req.path and "resourceVersion=4711" in watch_req.path
    assert "timeoutSeconds=4" in watch_req.path or "timeoutSeconds=5" in watch_req.path


def test_a_quiet_watch_returns_false_at_its_bound():
    def route(method, path, body):
        if "watch=true" in path:
            return Reply(stream=[], hold=3)
        return {"kind": "List", "metadata": {"resourceVersion": "1"}, "items": []}

    import time

    with FakeApiServer(route) as api:
        client = KubeClient(api.kubeconfig())
        start = time.monotonic()
        assert client.wait_for_change("/api/v1/namespaces/x/pods", 0.8) is False
        assert time.monotonic() - start < 1.5
        client.close()


def test_unreachable_server_is_a_transport_error():
    client = KubeClient(kubeconfig({"server": f"http://127.0.0.1:{closed_port()}"}, {}))
    with pytest.raises(KubeError) as err:
        client.get("/version", timeout=2)
    client.close()
    assert err.value.status == 0 and "cannot reach" in err.value.message and "ConnectionRefused" in err.value.message


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.DependencyWarning")
@pytest.mark.parametrize("proxy,fault", [("junk", "no scheme"), ("socks5://127.0.0.1:1", "socks"),
                                         ("http://[bad", "Failed to parse")])
def test_an_unusable_proxy_setting_is_a_clear_error(monkeypatch, proxy, fault):
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(ClientSetupError) as err:
        KubeClient(kubeconfig({"server": "https://kube.example.invalid:6443"}, {"token": "t"}))
    assert f"through proxy {proxy!r}" in str(err.value) and fault in str(err.value)


def _fuzz_kubeconfigs():
    from hypothesis import strategies as st

    junk = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                     st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
    b64 = st.one_of(junk, st.just("eA=="), st.just(B64_JUNK), st.binary(max_size=40).map(
        lambda b: base64.b64encode(b).decode()))
    cluster = st.fixed_dictionaries({}, optional={
        "server": st.one_of(junk, st.sampled_from(["https://127.0.0.1:6443", "ftp://x", "https://", "http://[::1]:1"])),
        "certificate-authority-data": b64, "certificate-authority": junk,
        "insecure-skip-tls-verify": junk, "proxy-url": junk, "tls-server-name": junk})
    user = st.fixed_dictionaries({}, optional={
        "token": junk, "client-certificate-data": b64, "client-key-data": b64,
        "client-certificate": junk, "client-key": junk, "username": junk, "password": junk})
    name = st.sampled_from(["a", "b"])
    entry = lambda key, body: st.one_of(junk, st.fixed_dictionaries({"name": name}, optional={key: body}))  # noqa: E731
    context = st.fixed_dictionaries({}, optional={"cluster": st.one_of(name, junk), "user": st.one_of(name, junk)})
    return st.one_of(junk, st.fixed_dictionaries({}, optional={
        "current-context": st.one_of(name, junk),
        "contexts": st.one_of(junk, st.lists(entry("context", st.one_of(context, junk)), max_size=3)),
        "clusters": st.one_of(junk, st.lists(entry("cluster", st.one_of(cluster, junk)), max_size=3)),
        "users": st.one_of(junk, st.lists(entry("user", st.one_of(user, junk)), max_size=3)),
    }))


def test_any_kubeconfig_shape_gives_a_client_or_one_clear_error():
    """Generated kubeconfigs (wrong types, missing parts, bad data): never another exception."""
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_fuzz_kubeconfigs())
    def check(cfg):
        try:
            KubeClient(yaml.safe_dump(cfg), environ={}).close()
        except (KubeconfigError, ClientSetupError) as err:
            assert str(err) and len(str(err)) < 2000

    check()
