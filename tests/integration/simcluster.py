"""One simulated Kubernetes cluster: real etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (simulated nodes and pods), plus the world controller
(tests/integration/world.py), all on 127.0.0.1 and all started detached, so they outlive the
``kind create`` (fake) that started them and stop on ``kind delete``.

Layout of a cluster's directory (``$KINDMESH_WORLD/clusters/<name>/``)::

    pki/            CA, API server, admin client, service-account keys (made here)
    cluster.json    name, ports, pids, nodes, subnets (what fake kind reports)
    logs/<proc>.log every process's output
    etcd/           etcd's data directory
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: `kind get`/`load` (frequent) need no cryptography
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

REPO = Path(__file__).resolve().parents[2]


def world_dir() -> Path:
    path = os.environ.get("KINDMESH_WORLD")
    if not path:
        raise SystemExit("KINDMESH_WORLD is not set: the engine tier's fakes run inside `make integration`")
    return Path(path)


def tools_bin() -> Path:
    path = os.environ.get("KINDMESH_TOOLS_BIN")
    if not path:
        raise SystemExit("KINDMESH_TOOLS_BIN is not set (run `make tools`)")
    return Path(path)


def free_port() -> int:
    """A port for a server of the world, never handed out twice in one world.

    ``bind(0)`` then close is racy: the kernel may give the same port to another bind(0) or to
    an outgoing connection before the server binds it (an etcd or API server then exits with
    "address already in use"; seen once in CI with three scenarios side by side). In a world
    (``KINDMESH_WORLD``), ports come from a counter under a lock, below the kernel's ephemeral
    range (which outgoing connections and bind(0) use), each checked free."""
    root = os.environ.get("KINDMESH_WORLD")
    if not root:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    low = _ephemeral_low()
    first, last = max(1024, low - 12000), low - 1
    Path(root).mkdir(parents=True, exist_ok=True)
    path = Path(root) / "ports.next"
    with open(Path(root) / "ports.lock", "a+") as lock:
        import fcntl
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            port = int(path.read_text()) if path.exists() else first
            for _ in range(last - first + 1):
                if port > last or port < first:
                    port = first
                candidate, port = port, port + 1
                if _bindable(candidate):
                    path.write_text(str(port))
                    return candidate
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    raise RuntimeError(f"no free port in {first}-{last}")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# ---------------------------------------------------------------------- certificates


def _key() -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.PEM)


def make_ca(cn: str) -> tuple[x509.Certificate, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(ca: tuple[x509.Certificate, Any], cn: str, *, orgs: tuple[str, ...] = (), dns: tuple[str, ...] = (),
          ips: tuple[str, ...] = (), server: bool = False) -> tuple[x509.Certificate, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID
    key = _key()
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(x509.Name(attrs)).issuer_name(ca[0].subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage(
            [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False)
    )
    if dns or ips:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]), critical=False)
    return builder.sign(ca[1], hashes.SHA256()), key


def write_pair(pki: Path, name: str, pair: tuple[x509.Certificate, Any]) -> None:
    (pki / f"{name}.crt").write_bytes(_pem_cert(pair[0]))
    (pki / f"{name}.key").write_bytes(_pem_key(pair[1]))
    (pki / f"{name}.key").chmod(0o600)


# ---------------------------------------------------------------------- the cluster


@dataclass
class NodeSpec:
    name: str
    role: str  # control-plane | worker
    ip: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class ClusterState:
    name: str
    network: str
    pod_subnet: str
    service_subnet: str
    image: str
    api_port: int
    etcd_port: int
    egress_port: int
    nodes: list[NodeSpec]
    pids: dict[str, int] = field(default_factory=dict)
    # The address the API server listens on: 127.0.0.1 for a kind cluster (kind publishes it
    # there); an existing cluster's own host address (lifecycle.py gives each one inside the
    # tier's private network namespace) for k3s/kubeadm-like clusters.
    host: str = "127.0.0.1"

    @property
    def dir(self) -> Path:
        return world_dir() / "clusters" / self.name

    def save(self) -> None:
        (self.dir / "cluster.json").write_text(json.dumps(asdict(self), indent=1, sort_keys=True))

    @classmethod
    def load(cls, name: str) -> ClusterState | None:
        path = world_dir() / "clusters" / name / "cluster.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["nodes"] = [NodeSpec(**n) for n in data["nodes"]]
        return cls(**data)


def egress_socket(state: ClusterState) -> Path:
    """The API server's ``cluster`` egress (webhooks): HTTP CONNECT over this Unix socket."""
    return state.dir / "egress.sock"


def kubeconfig(state: ClusterState, *, internal: bool = False) -> str:
    """The kubeconfig kind writes: cluster, user and context all named ``kind-<name>``."""
    pki = state.dir / "pki"
    import base64

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    ctx = f"kind-{state.name}"
    server = f"https://{state.name}-control-plane:6443" if internal else f"https://{state.host}:{state.api_port}"
    doc = {
        "apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": ctx,
        "clusters": [{"name": ctx, "cluster": {"server": server, "certificate-authority-data": b64(pki / "ca.crt")}}],
        "users": [{"name": ctx, "user": {"client-certificate-data": b64(pki / "admin.crt"),
                                         "client-key-data": b64(pki / "admin.key")}}],
        "contexts": [{"name": ctx, "context": {"cluster": ctx, "user": ctx}}],
    }
    import yaml

    return yaml.safe_dump(doc, sort_keys=False)


def _start(state: ClusterState, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    logs = state.dir / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env or dict(os.environ), cwd=state.dir)
    state.pids[name] = proc.pid


def _wait(what: str, check: Any, deadline: float, state: ClusterState, proc_name: str) -> None:
    """Poll ``check`` with bounded exponential backoff and jitter until it holds or the deadline."""
    delay, last = 0.05, "not tried"
    while True:
        try:
            if check():
                return
            last = "not yet"
        except Exception as exc:  # noqa: BLE001 - reported as the last thing seen
            last = f"{type(exc).__name__}: {exc}"
        pid = state.pids.get(proc_name)
        if pid and not _alive(pid):
            tail = (state.dir / "logs" / f"{proc_name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{proc_name} of cluster {state.name} exited while waiting for {what}:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster {state.name}: {what} not reached in time (last seen: {last})")
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 1.0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of ours is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def start(state: ClusterState, *, timeout: float = 120.0) -> None:
    """Make certificates, start every process, wait for the API server, create the nodes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    bin_dir = tools_bin()
    d = state.dir
    pki = d / "pki"
    pki.mkdir(parents=True, exist_ok=True)
    ca = make_ca("kubernetes")
    write_pair(pki, "ca", ca)
    svc = ipaddress.ip_network(state.service_subnet)
    write_pair(pki, "apiserver", issue(ca, "kube-apiserver", server=True, ips=tuple(dict.fromkeys(("127.0.0.1", state.host, str(svc.network_address + 1)))),
                                       dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                                            "kubernetes.default.svc.cluster.local", f"{state.name}-control-plane")))
    write_pair(pki, "admin", issue(ca, "kubernetes-admin", orgs=("system:masters",)))
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (pki / "sa.key").write_bytes(_pem_key(sa))
    (pki / "sa.pub").write_bytes(sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    (d / "admin.kubeconfig").write_text(kubeconfig(state))
    (d / "egress.yaml").write_text(json.dumps({
        "apiVersion": "apiserver.k8s.io/v1beta1", "kind": "EgressSelectorConfiguration",
        "egressSelections": [{"name": "cluster", "connection": {
            "proxyProtocol": "HTTPConnect", "transport": {"uds": {"udsName": str(egress_socket(state))}}}}],
    }))
    deadline = time.monotonic() + timeout
    peer = free_port()
    _start(state, "etcd", [
        str(bin_dir / "etcd"), "--name", "default", "--data-dir", str(d / "etcd"),
        "--listen-client-urls", f"http://127.0.0.1:{state.etcd_port}",
        "--advertise-client-urls", f"http://127.0.0.1:{state.etcd_port}",
        "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"default=http://127.0.0.1:{peer}", "--unsafe-no-fsync",
        "--quota-backend-bytes", str(1 << 30), "--log-level", "warn",
    ])
    state.save()  # the world process reads it
    _start(state, "world", [sys.executable, "-m", "tests.integration.world", "--cluster", state.name],
           env={**os.environ, "PYTHONPATH": str(REPO)})
    # The world controller must be serving (its egress socket: MetalLB's webhook) before the API
    # server starts: one that fails to start fails the create at once, with its log.
    _wait("the world controller", lambda: (d / "world.ready").exists(), deadline, state, "world")
    _start(state, "kube-apiserver", [
        str(bin_dir / "kube-apiserver"), "--etcd-servers", f"http://127.0.0.1:{state.etcd_port}",
        "--bind-address", state.host, "--advertise-address", state.host, "--secure-port", str(state.api_port),
        "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
        "--client-ca-file", str(pki / "ca.crt"), "--service-cluster-ip-range", state.service_subnet,
        "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file", str(pki / "sa.pub"), "--service-account-signing-key-file", str(pki / "sa.key"),
        "--authorization-mode", "RBAC", "--allow-privileged=true", "--endpoint-reconciler-type", "none",
        "--egress-selector-config-file", str(d / "egress.yaml"), "--enable-priority-and-fairness=false",
        "--cert-dir", str(pki), "--v", "1",
    ])
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

    def healthy() -> bool:
        with urllib.request.urlopen(f"https://{state.host}:{state.api_port}/readyz", context=ctx, timeout=5) as r:
            return bool(r.status == 200)
    _wait("the API server's /readyz", healthy, deadline, state, "kube-apiserver")
    kc = str(d / "admin.kubeconfig")
    _start(state, "kube-controller-manager", [
        str(bin_dir / "kube-controller-manager"), "--kubeconfig", kc, "--leader-elect=false",
        "--service-account-private-key-file", str(pki / "sa.key"), "--root-ca-file", str(pki / "ca.crt"),
        "--cluster-signing-cert-file", str(pki / "ca.crt"), "--cluster-signing-key-file", str(pki / "ca.key"),
        "--use-service-account-credentials=false", "--bind-address", "127.0.0.1", "--secure-port", "0",
        "--controllers", "*,-nodeipam,-cloud-node-lifecycle,-service,-route,-persistentvolume-binder,"
        "-attachdetach,-persistentvolume-expander,-ephemeral-volume,-pvc-protection,-pv-protection",
        "--concurrent-deployment-syncs", "10", "--concurrent-replicaset-syncs", "10",
    ])
    _start(state, "kube-scheduler", [
        str(bin_dir / "kube-scheduler"), "--kubeconfig", kc, "--leader-elect=false",
        "--bind-address", "127.0.0.1", "--secure-port", "0",
    ])
    from tests.integration import durations
    stages = durations.kwok_pod_stages()  # a timed world: pods Ready after the model's delays
    if stages:
        (d / "kwok-stages.yaml").write_text(stages)
    _start(state, "kwok", [
        str(bin_dir / "kwok"), *(["--config", str(d / "kwok-stages.yaml")] if stages else []),
        "--kubeconfig", kc, "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
        "--cidr", state.pod_subnet, "--node-ip", state.nodes[0].ip, "--server-address", "",
        # kwok renews each node's Lease (the kubelet's heartbeat): without it kube-controller-manager
        # marks the nodes NotReady after its grace period (40 s) and every workload's status follows.
        "--node-lease-duration-seconds", "40",
    ])
    state.save()
    create_nodes(state)


def create_nodes(state: ClusterState) -> None:
    """The Node objects kubelets would register, named and labelled as kind's nodes are."""
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(str(state.dir / "admin.kubeconfig")))
    workers = [n for n in state.nodes if n.role == "worker"]
    pods = ipaddress.ip_network(state.pod_subnet)
    per_node = list(pods.subnets(new_prefix=max(pods.prefixlen, 24)))
    for i, node in enumerate(state.nodes):
        labels = {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64", "type": "kwok",
                  **node.labels}
        taints = []
        if node.role == "control-plane":
            labels["node-role.kubernetes.io/control-plane"] = ""
            labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
            if workers:  # kind removes the control-plane taint from a cluster without workers
                taints.append({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})
        body = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node.name, "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"}},
            "spec": {"taints": taints, "podCIDR": str(per_node[i % len(per_node)]),
                     "podCIDRs": [str(per_node[i % len(per_node)])]},
            "status": {
                "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"},
                "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"},
                "addresses": [{"type": "InternalIP", "address": node.ip}, {"type": "Hostname", "address": node.name}],
                "nodeInfo": {"kubeletVersion": state.image.rsplit(":", 1)[-1].split("@")[0], "architecture": "amd64",
                             "operatingSystem": "linux", "containerRuntimeVersion": "containerd://2.1.4",
                             "kernelVersion": os.uname().release, "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
            },
        }
        api.create_node(body)


def stop(name: str) -> None:
    """Stop every process of the cluster (TERM, then KILL) and remove its directory."""
    import shutil

    state = ClusterState.load(name)
    if state is None:
        return
    for pid in state.pids.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    delay = 0.05
    while any(_alive(p) for p in state.pids.values()) and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    for pid in state.pids.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    shutil.rmtree(state.dir, ignore_errors=True)
