"""`python -m kindmesh.deploy.gate_cmd` as the command provider runs it: own process, env in, exit code + stderr out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from kindmesh.deploy.gate_cmd import KUBECONFIG_ENV, SPEC_ENV, UsageError, main, read_spec
from tests.fake_apiserver import FakeApiServer, Reply, closed_port, status
from tests.helpers import ROOT

CILIUM = [{"kind": "DaemonSet", "namespace": "kube-system", "name": "cilium", "optional": False}]
READY = {"kind": "DaemonSet", "metadata": {"generation": 1},
         "status": {"observedGeneration": 1, "desiredNumberScheduled": 1, "numberReady": 1,
                    "updatedNumberScheduled": 1}}


def run(gate: str, kubeconfig: str, spec: dict, **extra_env) -> subprocess.CompletedProcess:
    """Started the way pulumi-command starts it: in the project directory, env carrying the inputs."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({KUBECONFIG_ENV: kubeconfig, SPEC_ENV: json.dumps(spec),
                "HTTPS_PROXY": f"http://127.0.0.1:{closed_port()}"}, **extra_env)
    return subprocess.run([sys.executable, "-m", "kindmesh.deploy.gate_cmd", gate], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_rollout_gate_process_passes():
    with FakeApiServer(lambda m, p, b: READY) as api:
        proc = run("rollout", api.kubeconfig(), {"cluster": "us", "workloads": CILIUM, "timeout": 10})
    assert proc.returncode == 0, proc.stderr
    assert "rollout gate of cluster 'us' passed" in proc.stdout
    assert proc.stderr == ""


def test_a_failing_gate_exits_1_with_one_paragraph_and_no_secret():
    def route(method, path, body):
        return status(503, "the server is currently unable to handle the request", "ServiceUnavailable")

    with FakeApiServer(route) as api:
        start = time.monotonic()
        proc = run("metallb-webhook", api.kubeconfig(),
                   {"cluster": "eu", "timeout": 1,
                    "pool": {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                             "metadata": {"name": "p", "namespace": "metallb-system"},
                             "spec": {"addresses": ["172.30.255.239-172.30.255.254"]}}})
        took = time.monotonic() - start
    assert proc.returncode == 1
    assert "MetalLB's webhook in cluster 'eu' did not accept the address pool" in proc.stderr
    assert "HTTP 503" in proc.stderr
    assert "Traceback" not in proc.stderr and "s3cr3t-token" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1
    assert took < 1 + 3  # deadline plus interpreter start-up


def test_a_broken_kubeconfig_names_the_cluster_and_the_fault():
    proc = run("rollout", "apiVersion: v1\nkind: Config\ncontexts: []\n",
               {"cluster": "us", "workloads": CILIUM, "timeout": 5})
    assert proc.returncode == 1
    assert proc.stderr.strip() == "the kubeconfig of cluster 'us' cannot be used: it has no contexts"


@pytest.mark.parametrize("gate,env,fault", [
    ("nope", {SPEC_ENV: "{}"}, "unknown gate 'nope'"),
    ("rollout", {KUBECONFIG_ENV: ""}, f"{KUBECONFIG_ENV} is not set"),
    ("rollout", {SPEC_ENV: "{"}, "is not JSON"),
    ("rollout", {SPEC_ENV: json.dumps({"cluster": "us", "timeout": 5, "workloads": [{"kind": "Pod"}]})},
     "'workloads' must list"),
    ("rollout", {SPEC_ENV: json.dumps({"cluster": "us", "timeout": -1, "workloads": []})}, "'timeout' must be"),
    ("metallb-webhook", {SPEC_ENV: json.dumps({"cluster": "us", "timeout": 5, "pool": {}})}, "'pool' must be"),
    ("metallb-webhook", {SPEC_ENV: json.dumps({"cluster": "us", "timeout": 5, "workloads": "metallb-controller",
                                               "pool": {}})}, "'workloads' must list"),
])
def test_bad_invocations_exit_2(gate, env, fault, capsys):
    base = {KUBECONFIG_ENV: "x", SPEC_ENV: json.dumps({"cluster": "us", "timeout": 5, "workloads": []})}
    assert main([gate], base | env) == 2
    assert fault in capsys.readouterr().err
    with pytest.raises(UsageError):
        read_spec(gate, base | env)


def test_a_hung_call_is_ended_by_the_process_timer(monkeypatch, capsys):
    import kindmesh.deploy.gate_cmd as gate_cmd

    def hang(*args, **kwargs):
        time.sleep(30)

    monkeypatch.setattr(gate_cmd, "HARD_LIMIT_GRACE", 0.3)
    monkeypatch.setattr(gate_cmd, "run_gate", hang)
    start = time.monotonic()
    code = main(["rollout"], {KUBECONFIG_ENV: "x", SPEC_ENV: json.dumps({"cluster": "us", "timeout": 0.2,
                                                                        "workloads": []})})
    assert code == 1 and time.monotonic() - start < 2
    assert "did not finish within" in capsys.readouterr().err


def test_slow_server_process_ends_near_its_deadline():
    with FakeApiServer(lambda m, p, b: Reply(200, READY, delay=10)) as api:
        start = time.monotonic()
        proc = run("rollout", api.kubeconfig(), {"cluster": "us", "workloads": CILIUM, "timeout": 0.6})
        took = time.monotonic() - start
    assert proc.returncode == 1 and "limit 1s" in proc.stderr and took < 0.6 + 3


def test_a_failing_exec_plugin_is_one_line_naming_the_cluster(tmp_path):
    import stat

    from tests.fake_apiserver import kubeconfig

    plugin = tmp_path / "kube-login"
    plugin.write_text("#!/bin/sh\necho 'token expired: run kube-login' >&2\nexit 3\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    kc = kubeconfig({"server": f"https://127.0.0.1:{closed_port()}"},
                    {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin)}})
    proc = run("rollout", kc, {"cluster": "us", "workloads": CILIUM, "timeout": 5})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "kubeconfig of cluster 'us'" in lines[0]
    assert "exec plugin" in lines[0] and "token expired: run kube-login" in lines[0]
