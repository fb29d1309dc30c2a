"""`make diagnose`: walk a stack's layers, name the first broken one per cluster and what to do.

    python -m kindmesh.cli.diagnose --stack dev          (what `make diagnose` runs)

Read-only, for a stack in any state (never brought up, half up, up, partly destroyed). The
planned state (clusters, contexts, LoadBalancer IPs, peers) comes from ``Pulumi.<stack>.yaml``
through the planner, the way ``make doctor`` reads it; the clusters are reached through
``.kindmesh/<stack>/kubeconfig``. The layers, in order:

1. ``host`` (the whole stack): ``make doctor``'s checks;
2. ``docker network`` (kind clusters): the stack's network exists with its planned subnet;
3. ``kind nodes``: kind knows the cluster, every planned node container runs on that network;
4. ``kubernetes API``: the kubeconfig has the cluster's context and its API server answers;
5. ``nodes``: every planned node is registered and Ready;
6. ``cilium``: the Helm release, the agent DaemonSet, the operator, clustermesh-apiserver (and
   Hubble) rolled out, ``cilium-dbg status --brief`` in every running agent, KVStoreMesh ready;
7. ``metallb``: controller and speakers rolled out, the webhook served, the pools and the
   L2Advertisement present, the planned LoadBalancer IPs assigned;
8. ``clustermesh``: the cluster's mesh config (``cilium-clustermesh``, and ``cilium-kvstoremesh``
   when KVStoreMesh runs) holds every planned peer and no other, and an agent sees each ready
   (``cilium-dbg status -o json``);
9. ``demo`` (when the stack has it): its Deployments ready, its Services there.

A cluster is not descended past its first broken layer. One table is printed: cluster, layer,
state, the evidence (the object, its last events or log lines) and the fix or the next
command. Everything read goes into ``.kindmesh/<stack>/diagnose-<UTC time>.tar.gz`` (also
``kind export logs`` of each kind cluster), with secrets redacted: Secret data, kubeconfig
credentials, tokens and PEM private keys.

Bounded: every call has a timeout under one global deadline (``--timeout``, 45 s); an API
server that does not answer is a finding, not a hang. Exit 0 when every layer is healthy,
1 when a problem was found, 2 when it could not run (no or an invalid stack file, bad usage).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import datetime
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from kindmesh.cli import doctor
from kindmesh.core import demo as demo_objects
from kindmesh.core.render import (
    METALLB_NAMESPACE,
    POOL_NAME,
    RESERVED_POOL_NAME,
    cilium_values,
    metallb_values,
    metallb_workloads,
    planned_lb_services,
    rollout_workloads,
)
from kindmesh.deploy import context_file
from kindmesh.deploy.gates import WEBHOOK_SERVICE, lb_ip_assigned, workload_ready
from kindmesh.deploy.kubeapi import ClientSetupError, KubeClient, KubeconfigError, KubeError, snippet

DEFAULT_TIMEOUT = 45.0  # the reading; with the archive written, the dev stack is done within a minute
REQUEST_TIMEOUT = 6.0  # one API request
EXEC_TIMEOUT = 10.0  # one kubectl exec, one docker/kind call
HOST_TIMEOUT = 20.0  # the doctor's checks
LOGS_TIMEOUT = 35.0  # kind export logs, per cluster (in the background, under the deadline)
GRACE = 2.0  # how long past the deadline a cluster's walk may take to return its last call
MAX_LOG_FILE = 2 * 1024 * 1024  # of one kind log file, the tail kept
MAX_LOGS = 32 * 1024 * 1024  # all kind logs of one cluster

CILIUM_NS = "kube-system"
METALLB_NS = METALLB_NAMESPACE
MESH_SECRETS = ("cilium-clustermesh", "cilium-kvstoremesh")
POOLS = (POOL_NAME, RESERVED_POOL_NAME)
OK, WARN, FAIL = "ok", "warn", "FAIL"
STACK_ROW = "all"  # the cluster column of the rows about the whole stack (host, docker network)


# ----------------------------------------------------------------------------- rows
@dataclass
class Row:
    cluster: str
    layer: str
    state: str  # ok, warn, FAIL
    evidence: str
    fix: str = ""


class OutOfTime(Exception):
    """The global deadline has passed: no further call is made."""


@dataclass
class Deadline:
    seconds: float
    clock: Callable[[], float] = time.monotonic
    start: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.start = self.clock()

    def left(self) -> float:
        return self.start + self.seconds - self.clock()

    def bound(self, cap: float) -> float:
        """A timeout for the next call: ``cap``, cut to what is left; OutOfTime when nothing is."""
        left = self.left()
        if left <= 0.2:
            raise OutOfTime(f"the {self.seconds:.0f}s deadline was reached")
        return min(cap, left)


# ----------------------------------------------------------------------------- redaction
SECRET_KEYS = ("client-key-data", "client-certificate-data", "token", "id-token", "refresh-token",
               "password", "client-key", "ca.key", "tls.key")
_PEM_KEY = re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S)
# a block cut off (a log's tail kept, a line limit): its opening with the base64 lines after it,
# or the base64 lines before its end
_PEM_KEY_OPEN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[^\"'\n]*(?:\r?\n[A-Za-z0-9+/=]{16,})*")
_PEM_KEY_TAIL = re.compile(r"(?:[A-Za-z0-9+/=]{16,}\r?\n)*[A-Za-z0-9+/=]*-----END [A-Z0-9 ]*PRIVATE KEY-----")
_B64_PEM = re.compile(r"LS0tLS1CRUdJTi[A-Za-z0-9+/=\\n]{20,}")  # base64 of "-----BEGIN"
_KEY_VALUE = re.compile(
    r"(?P<key>[\"']?(?:" + "|".join(re.escape(k) for k in SECRET_KEYS) + r")[\"']?\s*[:=]\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s,}\]]+)")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
REDACTED = "<redacted>"


def _b64_private_key(match: re.Match[str]) -> str:
    text = match.group(0).replace("\\n", "")
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
    except (binascii.Error, ValueError):
        return match.group(0)
    return REDACTED if b"PRIVATE KEY" in decoded else match.group(0)


def scrub(text: str, known: Iterable[str] = ()) -> str:
    """Text with PEM private keys (plain or base64), tokens and credential values removed, and
    every string in ``known`` (the kubeconfig's credentials) too."""
    for secret in sorted({k for k in known if len(k) >= 8}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _PEM_KEY.sub(REDACTED, text)
    text = _PEM_KEY_OPEN.sub(REDACTED, text)
    text = _PEM_KEY_TAIL.sub(REDACTED, text)
    text = _B64_PEM.sub(_b64_private_key, text)
    text = _KEY_VALUE.sub(lambda m: m.group("key") + REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _JWT.sub(REDACTED, text)


def redact_object(obj: Any) -> Any:
    """A copy of an API object (or list) with every Secret's data and credential fields removed."""
    if isinstance(obj, list):
        return [redact_object(o) for o in obj]
    if not isinstance(obj, dict):
        return obj
    out: dict[str, Any] = {}
    secret = obj.get("kind") == "Secret"
    for key, value in obj.items():
        if secret and key in ("data", "stringData") and isinstance(value, dict):
            out[key] = {k: f"{REDACTED} ({len(str(v))} characters)" for k, v in value.items()}
        elif key in SECRET_KEYS and isinstance(value, str):
            out[key] = REDACTED
        elif secret and key == "metadata" and isinstance(value, dict):
            meta = dict(value)
            annotations = dict(meta.get("annotations") or {})
            annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
            meta["annotations"] = annotations
            meta.pop("managedFields", None)
            out[key] = meta
        else:
            out[key] = redact_object(value)
    if obj.get("kind", "").endswith("List") and isinstance(obj.get("items"), list):
        item_kind = obj["kind"][: -len("List")]
        out["items"] = [redact_object({"kind": item_kind, **i} if isinstance(i, dict) and "kind" not in i else i)
                        for i in obj["items"]]
    return out


def kubeconfig_secrets(text: str) -> list[str]:
    """The credential strings of a kubeconfig (raw and decoded), to scrub from everything written."""
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    found: list[str] = []
    users = cfg.get("users") if isinstance(cfg, dict) else None
    for entry in users if isinstance(users, list) else []:
        user = entry.get("user") if isinstance(entry, dict) else None
        if not isinstance(user, dict):
            continue
        for key in ("client-key-data", "client-certificate-data", "token", "password"):
            value = user.get(key)
            if not isinstance(value, str) or not value:
                continue
            found.append(value)
            if key.endswith("-data"):
                with contextlib.suppress(binascii.Error, ValueError):
                    decoded = base64.b64decode("".join(value.split()), validate=True).decode("ascii", "replace")
                    found.append(decoded)
                    found += [line for line in decoded.splitlines() if len(line) >= 16 and "-----" not in line]
    return found


# ----------------------------------------------------------------------------- archive
class Archive:
    """What the run read, in memory until written; everything is redacted on the way in."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.known: list[str] = []
        self._lock = threading.Lock()

    def add_text(self, name: str, text: str) -> None:
        data = scrub(text, self.known).encode()
        with self._lock:
            self.files[name] = data

    def add_json(self, name: str, obj: Any) -> None:
        self.add_text(name, json.dumps(redact_object(obj), indent=1, sort_keys=True, default=str))

    def add_tree(self, prefix: str, root: Path, budget: int = MAX_LOGS) -> None:
        used = 0
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            try:
                size = path.stat().st_size
                with path.open("rb") as fh:
                    if size > MAX_LOG_FILE:
                        fh.seek(size - MAX_LOG_FILE)
                    raw = fh.read(MAX_LOG_FILE)
            except OSError:
                continue
            if used + len(raw) > budget:
                self.add_text(f"{prefix}/TRUNCATED", f"kind logs above {budget} bytes were left out\n")
                return
            used += len(raw)
            self.add_text(f"{prefix}/{path.relative_to(root)}", raw.decode("utf-8", errors="replace"))

    def write(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w:gz", compresslevel=6) as tar:
            with self._lock:
                files = sorted(self.files.items())
            top = path.name[: -len(".tar.gz")]
            for name, data in files:
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
                tar.addfile(info, io.BytesIO(data))


# ----------------------------------------------------------------------------- tools
@dataclass
class Ran:
    rc: int
    out: str
    err: str


def run_tool(args: list[str], timeout: float) -> Ran:
    """A tool bounded by ``timeout``; rc 127 not found, 124 timed out (its process group ended)."""
    try:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                text=True, errors="replace", start_new_session=True)
    except FileNotFoundError:
        return Ran(127, "", f"{args[0]} not found on PATH")
    except OSError as err:
        return Ran(126, "", f"{args[0]} cannot be run: {err.strerror or err}")
    try:
        out, errs = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return Ran(124, out or "", f"{' '.join(args[:4])} did not finish within {timeout:.0f}s")
    return Ran(proc.returncode, out or "", errs or "")


def said(ran: Ran) -> str:
    lines = [ln for ln in (ran.err or ran.out).strip().splitlines() if ln.strip()]
    return snippet(lines[-1] if lines else f"exit {ran.rc}, no output", 300)


@dataclass
class Tools:
    docker: str = field(default_factory=lambda: os.environ.get("KINDMESH_DOCKER", "docker"))
    kind: str = field(default_factory=lambda: os.environ.get("KINDMESH_KIND", "kind"))
    kubectl: str = field(default_factory=lambda: os.environ.get("KINDMESH_KUBECTL", "kubectl"))


# ----------------------------------------------------------------------------- the walk
class Broken(Exception):
    """A layer is broken: its row (state FAIL)."""

    def __init__(self, evidence: str, fix: str):
        super().__init__(evidence)
        self.evidence = evidence
        self.fix = fix


def _age_key(event: dict[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or (event.get("metadata") or {})
               .get("creationTimestamp") or "")


def _events_text(events: list[dict[str, Any]], n: int = 3) -> str:
    shown = []
    for e in sorted(events, key=_age_key)[-n:]:
        count = f" x{e['count']}" if isinstance(e.get("count"), int) and e["count"] > 1 else ""
        shown.append(f"{e.get('type', '?')} {e.get('reason', '?')}{count}: {snippet(e.get('message', ''), 160)}")
    return "; ".join(shown)


class ClusterWalk:
    """One cluster's layers, top to bottom, stopping at the first broken one."""

    def __init__(self, stack: str, plan: Any, cluster: Any, *, kubeconfig: Path, archive: Archive,
                 deadline: Deadline, tools: Tools, kind_clusters: set[str] | None, network_ok: bool,
                 host_blocks_kind: str = ""):
        self.stack, self.plan, self.c = stack, plan, cluster
        self.name = cluster.name
        self.kubeconfig = kubeconfig
        self.archive, self.deadline, self.tools = archive, deadline, tools
        self.kind_clusters = kind_clusters
        self.network_ok = network_ok
        self.host_blocks_kind = host_blocks_kind
        self.rows: list[Row] = []
        self.layer = ""
        self.done = threading.Event()
        self.api: KubeClient | None = None
        self.context = cluster.name
        self.kubectl_note = ""  # why kubectl exec cannot be used here (then no more exec calls)
        self.kubectl_fix = doctor.INSTALL["kubectl"]

    # -- helpers --------------------------------------------------------------------
    @property
    def kubectl(self) -> str:
        return f"kubectl --context {self.context}"

    def _file(self, name: str) -> str:
        return f"clusters/{self.name}/{name}"

    def get(self, path: str, *, record: bool = True) -> dict[str, Any]:
        assert self.api is not None
        body = self.api.get(path, timeout=self.deadline.bound(REQUEST_TIMEOUT)).body
        if record:
            self.archive.add_json(self._file("api" + _safe(path) + ".json"), body)
        return body

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return self.get(path)
        except KubeError as err:
            if err.status == 404:
                self.archive.add_text(self._file("api" + _safe(path) + ".404"), str(err))
                return None
            raise

    def events(self, ns: str | None, name: str, kind: str = "") -> str:
        """The last events of one object ('' when none or unreadable)."""
        selector = f"involvedObject.name={name}" + (f",involvedObject.kind={kind}" if kind else "")
        base = f"/api/v1/namespaces/{ns}/events" if ns else "/api/v1/events"
        try:
            body = self.get(f"{base}?fieldSelector={quote(selector)}")
        except (KubeError, OutOfTime):
            return ""
        items = body.get("items")
        return _events_text(items if isinstance(items, list) else [])

    def log_tail(self, ns: str, pod: str, container: str, previous: bool) -> str:
        assert self.api is not None
        path = (f"/api/v1/namespaces/{ns}/pods/{pod}/log?container={quote(container)}&tailLines=20"
                + ("&previous=true" if previous else ""))
        try:
            text = self.api.get_text(path, timeout=self.deadline.bound(REQUEST_TIMEOUT))
        except (KubeError, OutOfTime):
            return ""
        self.archive.add_text(self._file(f"logs/{ns}/{pod}/{container}{'.previous' if previous else ''}.log"), text)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return " | ".join(snippet(ln, 160) for ln in lines[-2:])

    def kubectl_run(self, args: list[str], name: str) -> Ran | None:
        """kubectl against this cluster (None when kubectl cannot run: noted once)."""
        if self.kubectl_note:
            return None
        ran = run_tool([self.tools.kubectl, "--kubeconfig", str(self.kubeconfig), "--context", self.context,
                        f"--request-timeout={int(EXEC_TIMEOUT)}s", *args], self.deadline.bound(EXEC_TIMEOUT))
        if ran.rc in (126, 127):
            self.kubectl_note = said(ran)
            return None
        self.archive.add_text(self._file(f"kubectl/{name}.txt"),
                              f"$ kubectl {' '.join(args)}\nexit {ran.rc}\n--- stdout\n{ran.out}\n--- stderr\n{ran.err}")
        return ran

    def exec_unreachable(self, ran: Ran, pod: str) -> bool:
        """Whether ``kubectl exec`` never reached the agent (the API server cannot open the exec
        stream to the node's kubelet): the agent's own state is unknown, not broken. Noted once
        (a warn row, no further exec calls)."""
        if ran.rc == 0 or ran.rc == 124 or "command terminated with exit code" in ran.err \
                or not _EXEC_UNREACHABLE.search(ran.err):
            return False
        self.kubectl_note = f"kubectl exec did not reach agent {pod}: {said(ran)}"
        self.kubectl_fix = (f"the API server must reach the node's kubelet (port 10250) to exec: "
                            f"{self.kubectl} -n {CILIUM_NS} exec {pod} -c cilium-agent -- cilium-dbg status; "
                            f"{self.kubectl} get --raw /readyz?verbose")
        return True

    # -- evidence about workloads ----------------------------------------------------
    def pods_for(self, ns: str, selector: dict[str, Any]) -> list[dict[str, Any]]:
        labels = ",".join(f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items()))
        if not labels:
            return []
        body = self.get(f"/api/v1/namespaces/{ns}/pods?labelSelector={quote(labels)}")
        items = body.get("items")
        return [p for p in items if isinstance(p, dict)] if isinstance(items, list) else []

    def workload_broken(self, kind: str, ns: str, name: str, obj: dict[str, Any] | None, why: str) -> Broken:
        what = f"{kind} {ns}/{name}"
        describe = f"{self.kubectl} -n {ns} describe {kind.lower()} {name}"
        if obj is None:
            return Broken(f"{what} does not exist", why)
        _, reason = workload_ready(obj)
        parts = [f"{what}: {reason}"]
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if isinstance(cond, dict) and cond.get("status") == "False" and cond.get("message"):
                parts.append(f"{cond.get('type')}: {snippet(cond['message'], 160)}")
        fix = describe
        try:
            pods = self.pods_for(ns, (obj.get("spec") or {}).get("selector") or {})
        except KubeError:
            pods = []
        bad = [p for p in pods if not _pod_ready(p)]
        if not pods:
            events = self.events(ns, name, kind)
            if events:
                parts.append(f"events: {events}")
        for pod in bad[:1]:
            pname = pod["metadata"]["name"]
            state, container, crashed = _pod_state(pod)
            parts.append(f"pod {pname}: {state}")
            events = self.events(ns, pname, "Pod")
            if events:
                parts.append(f"events: {events}")
            if container:
                tail = self.log_tail(ns, pname, container, previous=crashed)
                if tail:
                    parts.append(f"log: {tail}")
            fix = _pod_fix(self.kubectl, ns, pname, container, state, crashed, describe)
        if why:
            fix = f"{fix}; {why}"
        return Broken("; ".join(parts), fix)

    def check_workload(self, w: dict[str, Any], why: str = "") -> str | None:
        """A DaemonSet/Deployment rolled out: its one-line summary, or Broken (None: optional, absent)."""
        kind, ns, name = w["kind"], w["namespace"], w["name"]
        plural = "daemonsets" if kind == "DaemonSet" else "deployments"
        obj = self.get_or_none(f"/apis/apps/v1/namespaces/{ns}/{plural}/{name}")
        if obj is None and w.get("optional"):
            return None
        if obj is None:
            raise self.workload_broken(kind, ns, name, None, why or f"make up STACK={self.stack} installs it")
        ok, reason = workload_ready(obj)
        if not ok:
            raise self.workload_broken(kind, ns, name, obj, why)
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        if kind == "Deployment" and replicas == 0:
            # "0/0 available" is a finished rollout to the gates, but nothing runs: every
            # Deployment kindmesh installs wants at least one replica
            raise Broken(f"{kind} {ns}/{name} is scaled to 0 replicas: nothing runs",
                         f"{self.kubectl} -n {ns} scale deployment {name} --replicas=1 (what the stack installs); "
                         f"{self.kubectl} -n {ns} describe deployment {name}")
        return f"{name} {reason}"

    # -- layers ----------------------------------------------------------------------
    def layers(self) -> list[tuple[str, Callable[[], str]]]:
        out: list[tuple[str, Callable[[], str]]] = []
        if self.c.source == "kind":
            out.append(("kind nodes", self.layer_kind_nodes))
        out += [("kubernetes API", self.layer_api), ("nodes", self.layer_nodes), ("cilium", self.layer_cilium),
                ("metallb", self.layer_metallb), ("clustermesh", self.layer_clustermesh)]
        if self.c.demo.enabled:
            out.append(("demo", self.layer_demo))
        return out

    def run(self) -> None:
        try:
            self._walk()
        except Exception as err:  # a bug must still end in a row, never a traceback
            self.rows.append(Row(self.name, self.layer or "?", FAIL,
                                 f"diagnose failed here: {type(err).__name__}: {snippet(err)}",
                                 "report this; the archive holds what was read"))
        finally:
            if self.api is not None:
                with contextlib.suppress(Exception):
                    self.api.close()
            self.done.set()

    def _walk(self) -> None:
        layers = self.layers()
        if self.c.source == "kind" and (self.host_blocks_kind or not self.network_ok):
            blocked = "host" if self.host_blocks_kind else "docker network"
            self.rows.append(Row(self.name, "kind nodes", "skip", f"not checked: the {blocked} layer is broken"))
            return
        for i, (layer, check) in enumerate(layers):
            self.layer = layer
            try:
                summary = check()
            except Broken as b:
                self.rows.append(Row(self.name, layer, FAIL, b.evidence, b.fix))
                rest = [name for name, _ in layers[i + 1:]]
                if rest:
                    self.rows.append(Row(self.name, ", ".join(rest), "skip", "not checked: a layer above is broken"))
                return
            except OutOfTime as err:
                self.rows.append(Row(self.name, layer, FAIL, f"not finished: {err}",
                                     f"run again with more time: python -m kindmesh.cli.diagnose --stack "
                                     f"{self.stack} --timeout 120"))
                return
            except KubeError as err:
                self.rows.append(Row(self.name, layer, FAIL, f"the API server stopped answering: {err}",
                                     f"{self.kubectl} get --raw /readyz; then make diagnose STACK={self.stack} again"))
                return
            self.rows.append(Row(self.name, layer, OK, summary))
            if self.kubectl_note and not any(r.state == WARN and r.cluster == self.name for r in self.rows):
                self.rows.append(Row(self.name, layer, WARN, f"cilium-dbg status not read: {self.kubectl_note}",
                                     self.kubectl_fix))

    def layer_kind_nodes(self) -> str:
        kind_name = self.c.kind_name
        if self.kind_clusters is None or kind_name not in self.kind_clusters:
            known = ", ".join(sorted(self.kind_clusters or ())) or "none"
            raise Broken(f"kind has no cluster {kind_name} (kind get clusters: {known})",
                         f"never brought up or destroyed: make up STACK={self.stack}; deleted by hand: "
                         f"make refresh STACK={self.stack}, then make up STACK={self.stack} (it prints the "
                         "`pulumi up --replace` that recreates it)")
        states = []
        for node in self.c.node_names:
            ran = run_tool([self.tools.docker, "inspect", "-f", "{{json .State}} {{json .NetworkSettings.Networks}}",
                            node], self.deadline.bound(EXEC_TIMEOUT))
            self.archive.add_text(f"docker/inspect-{node}.txt", f"exit {ran.rc}\n{ran.out}\n{ran.err}")
            if ran.rc != 0:
                raise Broken(f"node container {node}: {said(ran)}",
                             f"kind's cluster lost a node: kind delete cluster --name {kind_name}, then make up "
                             f"STACK={self.stack}")
            state, networks = _two_json(ran.out)
            status = str(state.get("Status") or "?")
            if status != "running":
                exit_code = state.get("ExitCode")
                error = state.get("Error") or ""
                raise Broken(f"node container {node} is {status} (exit code {exit_code}{'; ' + error if error else ''})",
                             f"docker start {node} (all of the cluster's: docker start $(docker ps -aq --filter "
                             f"label=io.x-k8s.kind.cluster={kind_name})); then docker logs {node}")
            if networks and self.plan.network.name not in networks:
                raise Broken(f"node container {node} is on {', '.join(sorted(networks))}, not on the stack's "
                             f"network {self.plan.network.name}",
                             f"it is not this stack's cluster: kind delete cluster --name {kind_name}, then make up "
                             f"STACK={self.stack}")
            states.append(node)
        return f"{kind_name}: {len(states)} node containers running on {self.plan.network.name}"

    def layer_api(self) -> str:
        make_kc = f"make kubeconfig STACK={self.stack} writes it again from the stack's outputs"
        try:
            text = self.kubeconfig.read_text()
        except FileNotFoundError:
            raise Broken(f"{self.kubeconfig} does not exist",
                         f"{make_kc} (a stack never brought up: make up STACK={self.stack})") from None
        except OSError as err:
            raise Broken(f"{self.kubeconfig} cannot be read: {err.strerror}", make_kc) from None
        names = _context_names(text)
        if self.c.name not in names and self.c.context not in names:
            raise Broken(f"{self.kubeconfig} has no context {self.c.name!r} (it has: {', '.join(names) or 'none'})",
                         make_kc)
        self.context = self.c.name if self.c.name in names else self.c.context
        try:
            self.api = KubeClient(text, context=self.context)
        except KubeconfigError as err:
            raise Broken(f"the kubeconfig's context {self.context!r} cannot be used: it {err}", make_kc) from None
        except ClientSetupError as err:
            raise Broken(str(err), "check HTTPS_PROXY/NO_PROXY or the kubeconfig's proxy-url") from None
        try:
            version = self.get("/version")
        except KubeError as err:
            if err.status in (401, 403):
                raise Broken(f"{self.api.server} refuses the kubeconfig's credentials: {err}", make_kc) from None
            where = (f"docker ps -a --filter name={self.c.control_plane}; docker logs --tail 50 {self.c.control_plane}"
                     if self.c.source == "kind" else f"{self.kubectl} get --raw /readyz")
            raise Broken(f"the API server {self.api.server} does not answer: {err}",
                         f"check the control plane: {where}; if it was recreated on another port: {make_kc}") from None
        return f"{self.api.server} answers (Kubernetes {version.get('gitVersion', '?')})"

    def layer_nodes(self) -> str:
        body = self.get("/api/v1/nodes")
        nodes = {str((n.get("metadata") or {}).get("name")): n for n in body.get("items") or [] if isinstance(n, dict)}
        planned = list(self.c.node_names) if self.c.source == "kind" else []
        missing = [n for n in planned if n not in nodes]
        if missing:
            raise Broken(f"nodes not registered: {', '.join(missing)} (registered: {', '.join(sorted(nodes)) or 'none'})",
                         f"docker exec {missing[0]} journalctl -u kubelet -n 30 --no-pager")
        if not nodes:
            raise Broken("the cluster has no nodes", f"{self.kubectl} get nodes")
        for name, node in sorted(nodes.items()):
            ready = next((c for c in (node.get("status") or {}).get("conditions") or []
                          if isinstance(c, dict) and c.get("type") == "Ready"), None)
            if ready is not None and ready.get("status") == "True":
                continue
            message = snippet((ready or {}).get("message") or "no Ready condition", 200)
            events = self.events(None, name, "Node")
            evidence = f"node {name} is not Ready: {(ready or {}).get('reason', '')} {message}".strip()
            if events:
                evidence += f"; events: {events}"
            if any(w in message.lower() for w in ("cni", "network plugin", "networkready=false")):
                agent, fix = self.agent_on(name)
                evidence += f"; {agent}"
            elif self.c.source == "kind":
                fix = f"docker exec {name} journalctl -u kubelet -n 50 --no-pager; {self.kubectl} describe node {name}"
            else:
                fix = f"{self.kubectl} describe node {name} (then the kubelet's log on that machine)"
            raise Broken(evidence, fix)
        return f"{len(nodes)}/{len(nodes)} nodes Ready"

    def agent_on(self, node: str) -> tuple[str, str]:
        """(what the Cilium agent on ``node`` is doing, what to do) for a node whose network is not ready."""
        if self.get_or_none(f"/apis/apps/v1/namespaces/{CILIUM_NS}/daemonsets/cilium") is None:
            return ("Cilium is not installed (no DaemonSet kube-system/cilium)",
                    f"make up STACK={self.stack} installs it (when a run stopped before, its output names the "
                    "failed resource)")
        body = self.get(f"/api/v1/namespaces/{CILIUM_NS}/pods?labelSelector={quote('k8s-app=cilium')}"
                        f"&fieldSelector={quote(f'spec.nodeName={node}')}")
        pods = [p for p in body.get("items") or [] if isinstance(p, dict)]
        describe = f"{self.kubectl} -n {CILIUM_NS} describe daemonset cilium"
        if not pods:
            return "no Cilium agent pod on it", f"{describe} (why it has no pod there)"
        pod = pods[0]["metadata"]["name"]
        state, container, crashed = _pod_state(pods[0])
        text = f"its Cilium agent {pod}: {state}"
        events = self.events(CILIUM_NS, pod, "Pod")
        if events:
            text += f"; events: {events}"
        if container:
            tail = self.log_tail(CILIUM_NS, pod, container, previous=crashed)
            if tail:
                text += f"; log: {tail}"
        return text, _pod_fix(self.kubectl, CILIUM_NS, pod, container, state, crashed, describe)

    def layer_cilium(self) -> str:
        values = cilium_values(self.plan, self.c)
        summary = [self.helm_release("cilium", CILIUM_NS)]
        for w in rollout_workloads(values):
            line = self.check_workload(w)
            if line:
                summary.append(line)
        summary.append(self.agents_status())
        summary.append(self.kvstoremesh())
        return "; ".join(s for s in summary if s)

    def helm_release(self, release: str, ns: str) -> str:
        body = self.get(f"/api/v1/namespaces/{ns}/secrets?labelSelector={quote(f'owner=helm,name={release}')}")
        revisions = []
        for s in body.get("items") or []:
            labels = ((s or {}).get("metadata") or {}).get("labels") or {}
            with contextlib.suppress(ValueError):
                revisions.append((int(labels.get("version", "0")), str(labels.get("status", "?"))))
        if not revisions:
            raise Broken(f"no Helm release {release!r} in {ns}",
                         f"not installed yet: make up STACK={self.stack} (if it stopped before: make diagnose "
                         "after it, or the `pulumi up` output names the failed resource)")
        version, status = max(revisions)
        if status != "deployed" and status != "superseded":
            raise Broken(f"Helm release {release} revision {version} is {status!r}",
                         f"make up STACK={self.stack} applies it again; a release stuck in pending-*: "
                         f"make refresh STACK={self.stack} first")
        return f"Helm release {release} r{version} {status}"

    def agents_status(self) -> str:
        body = self.get(f"/api/v1/namespaces/{CILIUM_NS}/pods?labelSelector={quote('k8s-app=cilium')}")
        pods = [p for p in body.get("items") or [] if isinstance(p, dict)]
        running = [p["metadata"]["name"] for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        checked = 0
        for pod in running:
            ran = self.kubectl_run(["-n", CILIUM_NS, "exec", pod, "-c", "cilium-agent", "--",
                                   "cilium-dbg", "status", "--brief"], f"cilium-dbg-status-{pod}")
            if ran is None:
                return ""
            if self.exec_unreachable(ran, pod):
                return ""
            if ran.rc != 0 or not ran.out.strip().upper().startswith("OK"):
                tail = self.log_tail(CILIUM_NS, pod, "cilium-agent", previous=False)
                raise Broken(f"agent {pod}: cilium-dbg status --brief: {said(ran)}" + (f"; log: {tail}" if tail else ""),
                             f"{self.kubectl} -n {CILIUM_NS} exec {pod} -c cilium-agent -- cilium-dbg status "
                             f"--verbose; {self.kubectl} -n {CILIUM_NS} logs {pod} -c cilium-agent --tail 100")
            checked += 1
        return f"cilium-dbg status OK on {checked}/{len(pods)} agents"

    def kvstoremesh(self) -> str:
        body = self.get(f"/api/v1/namespaces/{CILIUM_NS}/pods?labelSelector={quote('k8s-app=clustermesh-apiserver')}")
        pods = [p for p in body.get("items") or [] if isinstance(p, dict)]
        seen = 0
        for pod in pods:
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                if not isinstance(cs, dict) or cs.get("name") != "kvstoremesh":
                    continue
                seen += 1
                if not cs.get("ready"):
                    name = pod["metadata"]["name"]
                    state, _, crashed = _pod_state(pod, only="kvstoremesh")
                    tail = self.log_tail(CILIUM_NS, name, "kvstoremesh", previous=crashed)
                    raise Broken(f"KVStoreMesh in {name} is not ready: {state}" + (f"; log: {tail}" if tail else ""),
                                 f"{self.kubectl} -n {CILIUM_NS} logs {name} -c kvstoremesh --tail 100"
                                 + (" --previous" if crashed else ""))
        return f"KVStoreMesh ready ({seen} pod)" if seen else "KVStoreMesh not in use"

    def layer_metallb(self) -> str:
        existing = getattr(self.c, "existing", None)
        if existing is not None and getattr(existing, "endpoint", "pool") != "pool":
            # the planner gave this existing cluster no MetalLB: its mesh endpoint is a NodePort or its own LB
            summary = [f"MetalLB is not installed here (mesh endpoint: {existing.endpoint})"]
        else:
            summary = [self.helm_release("metallb", METALLB_NS)]
            for w in metallb_workloads(metallb_values()):
                line = self.check_workload(w)
                if line:
                    summary.append(line)
            summary.append(self.webhook())
            summary.append(self.pools())
        summary += self.lb_ips()
        return "; ".join(summary)

    def webhook(self) -> str:
        path = (f"/apis/discovery.k8s.io/v1/namespaces/{METALLB_NS}/endpointslices"
                f"?labelSelector={quote(f'kubernetes.io/service-name={WEBHOOK_SERVICE}')}")
        body = self.get(path)
        ready = [a for s in body.get("items") or [] if isinstance(s, dict) for e in s.get("endpoints") or []
                 if isinstance(e, dict) and (e.get("conditions") or {}).get("ready") is not False
                 for a in e.get("addresses") or []]
        if not ready:
            events = self.events(METALLB_NS, WEBHOOK_SERVICE, "Service")
            raise Broken(f"MetalLB's webhook ({METALLB_NS}/{WEBHOOK_SERVICE}) has no ready endpoint: nothing admits "
                         "the address pools" + (f"; events: {events}" if events else ""),
                         f"the controller serves it: {self.kubectl} -n {METALLB_NS} logs deploy/metallb-controller "
                         "--tail 50")
        return f"webhook served by {', '.join(ready[:3])}"

    def pools(self) -> str:
        body = self.get_or_none(f"/apis/metallb.io/v1beta1/namespaces/{METALLB_NS}/ipaddresspools")
        pools = {str((p.get("metadata") or {}).get("name")): p for p in (body or {}).get("items") or []
                 if isinstance(p, dict)}
        missing = [p for p in POOLS if p not in pools]
        if missing:
            raise Broken(f"IPAddressPool {', '.join(missing)} missing in {METALLB_NS} "
                         f"(there: {', '.join(sorted(pools)) or 'none'})",
                         f"make up STACK={self.stack} applies them (after MetalLB's webhook gate)")
        adv = self.get_or_none(f"/apis/metallb.io/v1beta1/namespaces/{METALLB_NS}/l2advertisements")
        if not (adv or {}).get("items"):
            raise Broken(f"no L2Advertisement in {METALLB_NS}: the pools' IPs are not announced",
                         f"make up STACK={self.stack} applies it")
        return f"pools {', '.join(POOLS)} and L2Advertisement present"

    def lb_ips(self) -> list[str]:
        out = []
        for svc in planned_lb_services(cilium_values(self.plan, self.c)):
            ns, name, ip = svc["namespace"], svc["name"], svc["ip"]
            obj = self.get_or_none(f"/api/v1/namespaces/{ns}/services/{name}")
            if obj is None:
                raise Broken(f"Service {ns}/{name} does not exist", f"make up STACK={self.stack}")
            ok, reason = lb_ip_assigned(obj, ip)
            if ok:
                out.append(f"{name} has {ip}")
                continue
            holder = self.ip_holder(ip, (ns, name))
            events = self.events(ns, name, "Service")
            evidence = f"Service {ns}/{name}: {reason}"
            if holder:
                evidence += f"; {ip} is held by Service {holder}"
            if events:
                evidence += f"; events: {events}"
            fix = (f"give {ip} back: {self.kubectl} -n {holder.split('/')[0]} delete service {holder.split('/')[1]} "
                   "(or change that Service), then make up" if holder else
                   f"{self.kubectl} -n {ns} describe service {name}; {self.kubectl} -n {METALLB_NS} logs "
                   "deploy/metallb-controller --tail 50")
            raise Broken(evidence, fix)
        return out

    def ip_holder(self, ip: str, own: tuple[str, str]) -> str:
        try:
            body = self.get("/api/v1/services")
        except KubeError:
            return ""
        for s in body.get("items") or []:
            meta = (s or {}).get("metadata") or {}
            key = (str(meta.get("namespace")), str(meta.get("name")))
            ingress = (((s or {}).get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if key != own and any(isinstance(i, dict) and i.get("ip") == ip for i in ingress):
                return "/".join(key)
        return ""

    def layer_clustermesh(self) -> str:
        want = set(self.c.peers)
        seen_any = []
        for secret in MESH_SECRETS:
            obj = self.get_or_none(f"/api/v1/namespaces/{CILIUM_NS}/secrets/{secret}")
            if obj is None:
                if secret == MESH_SECRETS[0] and want:
                    raise Broken(f"Secret {CILIUM_NS}/{secret} (the mesh config) does not exist",
                                 f"make up STACK={self.stack} (Cilium's values carry the peers)")
                continue
            keys = {k for k in (obj.get("data") or {}) if "." not in k}  # <peer>; <peer>.etcd-client.* are certs
            missing, extra = sorted(want - keys), sorted(keys - want)
            if missing or extra:
                parts = [f"missing {', '.join(missing)}"] if missing else []
                parts += [f"unexpected {', '.join(extra)}"] if extra else []
                raise Broken(f"Secret {CILIUM_NS}/{secret} (mesh config): {'; '.join(parts)} (planned peers: "
                             f"{', '.join(sorted(want)) or 'none'})",
                             f"make up STACK={self.stack} writes the planned peers into Cilium's values "
                             f"(make preview STACK={self.stack} shows the change first)")
            seen_any.append(secret)
        if not want:
            return "no peers planned"
        return f"peers {', '.join(sorted(want))} in {', '.join(seen_any)}" + self.agent_mesh(want)

    def agent_mesh(self, want: set[str]) -> str:
        """What one running agent says of its remote clusters (``cilium-dbg status -o json``): every
        planned peer there and ready."""
        body = self.get(f"/api/v1/namespaces/{CILIUM_NS}/pods?labelSelector={quote('k8s-app=cilium')}")
        running = [p["metadata"]["name"] for p in body.get("items") or []
                   if isinstance(p, dict) and (p.get("status") or {}).get("phase") == "Running"]
        if not running:
            return ""
        pod = running[0]
        ran = self.kubectl_run(["-n", CILIUM_NS, "exec", pod, "-c", "cilium-agent", "--",
                                "cilium-dbg", "status", "-o", "json"], f"cilium-dbg-status-json-{pod}")
        if ran is None or self.exec_unreachable(ran, pod):
            return ""
        look = (f"cilium --context {self.context} clustermesh status; {self.kubectl} -n {CILIUM_NS} logs "
                "deploy/clustermesh-apiserver -c kvstoremesh --tail 50")
        try:
            data = json.loads(ran.out) if ran.rc == 0 else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise Broken(f"agent {pod}: cilium-dbg status -o json: {said(ran)}", look)
        clusters = (data.get("cluster-mesh") or {}).get("clusters") or []
        seen = {str(c.get("name")): c for c in clusters if isinstance(c, dict) and c.get("name")}
        problems = [f"{n} missing" for n in sorted(want - set(seen))]
        problems += [f"{n} unexpected" for n in sorted(set(seen) - want)]
        for n in sorted(want & set(seen)):
            c = seen[n]
            if not c.get("ready"):
                last = f", last {c['last-failure']}" if c.get("last-failure") else ""
                problems.append(f"{n} not ready ({snippet(c.get('status') or '?', 120)}; "
                                f"{c.get('num-failures', 0)} failures{last})")
        if problems:
            raise Broken(f"agent {pod} sees: {'; '.join(problems)}",
                         f"a peer's clustermesh-apiserver must answer at its planned LoadBalancer IP: see that "
                         f"cluster's rows; {look}")
        return f"; agent {pod} sees {', '.join(sorted(want))} ready"

    def layer_demo(self) -> str:
        ns = demo_objects.NAMESPACE
        found = []
        for obj in demo_objects.manifests(self.plan, self.c):
            kind, name = obj["kind"], obj["metadata"]["name"]
            if kind == "Deployment":
                line = self.check_workload({"kind": kind, "namespace": ns, "name": name},
                                           f"make up STACK={self.stack} deploys it")
                found.append(line or name)
            elif kind == "Service":
                if self.get_or_none(f"/api/v1/namespaces/{ns}/services/{name}") is None:
                    raise Broken(f"Service {ns}/{name} does not exist", f"make up STACK={self.stack} deploys it")
                found.append(f"Service {name}")
        return "; ".join(found) + f"; then make verify STACK={self.stack} checks the mesh end to end"


# what the API server answers when it cannot open an exec stream to the kubelet (the remote
# command never ran; "command terminated with exit code N" is the command's own failure)
_EXEC_UNREACHABLE = re.compile(r"error dialing backend|error sending request|unable to upgrade connection|"
                               r"upgrade request required|proxy error|does not have a host assigned", re.I)


def _safe(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9._/=-]+", "_", path.replace("?", "/"))[:200]


def _two_json(text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    rest = text.strip()
    while rest and len(out) < 2:
        try:
            obj, end = decoder.raw_decode(rest)
        except ValueError:
            break
        out.append(obj if isinstance(obj, dict) else {})
        rest = rest[end:].strip()
    if len(out) == 1:  # an older format answers the networks only
        return {"Status": "running"}, out[0]
    return (out[0], out[1]) if len(out) == 2 else ({}, {})


def _context_names(text: str) -> list[str]:
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    contexts = cfg.get("contexts") if isinstance(cfg, dict) else None
    return [str(c.get("name")) for c in contexts or [] if isinstance(c, dict)] if isinstance(contexts, list) else []


def _pod_ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _pod_state(pod: dict[str, Any], only: str = "") -> tuple[str, str, bool]:
    """(what the pod is doing, the container to read logs of, whether it crashed before)."""
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        if not isinstance(cs, dict) or (only and cs.get("name") != only) or cs.get("ready"):
            continue
        state = cs.get("state") or {}
        restarts = cs.get("restartCount") or 0
        last = (cs.get("lastState") or {}).get("terminated") or {}
        if "waiting" in state:
            w = state["waiting"] or {}
            text = f"container {cs.get('name')} waiting: {w.get('reason', '?')}"
            if w.get("message"):
                text += f" ({snippet(w['message'], 160)})"
        elif "terminated" in state:
            t = state["terminated"] or {}
            text = f"container {cs.get('name')} terminated: {t.get('reason', '?')} (exit {t.get('exitCode', '?')})"
        else:
            text = f"container {cs.get('name')} running, not ready"
        if restarts:
            text += f", {restarts} restarts"
            if last:
                text += f", last exit {last.get('exitCode', '?')} {last.get('reason', '')}".rstrip()
        return text, str(cs.get("name") or ""), bool(restarts)
    phase = status.get("phase", "?")
    conds = [f"{c.get('type')}: {snippet(c.get('message') or c.get('reason') or '', 160)}"
             for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("status") == "False"]
    return f"{phase}" + (f" ({'; '.join(conds)})" if conds else ""), "", False


def _pod_fix(kubectl: str, ns: str, pod: str, container: str, state: str, crashed: bool, describe: str) -> str:
    if "ImagePull" in state or "ErrImage" in state:
        return (f"the image cannot be pulled into the node: {kubectl} -n {ns} describe pod {pod}; "
                "make up pre-pulls and loads the planned images (kindmesh:kind.prePull)")
    if crashed and container:
        return f"{kubectl} -n {ns} logs {pod} -c {container} --previous; {describe}"
    if state.startswith("Pending"):
        return f"{kubectl} -n {ns} describe pod {pod} (why it is not scheduled)"
    if container:
        return f"{kubectl} -n {ns} logs {pod} -c {container} --tail 100; {describe}"
    return describe


# ----------------------------------------------------------------------------- stack-wide
MEMORY_ROWS = ("memory", "disk")  # estimates for nodes yet to be made: the stack's own nodes use them once up
KIND_BLOCKERS = ("docker",)  # kind itself: `kind get clusters` decides


def host_rows(stack: str, root: Path, deadline: Deadline, archive: Archive, stack_up: bool,
              check: Callable[[str, Path], list[doctor.Finding]]) -> tuple[list[Row], str]:
    """The doctor's checks as rows (bounded); returns the rows and why kind clusters cannot be
    looked at ('' when they can)."""
    box: dict[str, list[doctor.Finding]] = {}

    def target() -> None:
        try:
            box["findings"] = check(stack, root)
        except Exception as err:  # the doctor's own bug: a row, not a traceback
            box["findings"] = [doctor.Finding("doctor", "warn", f"the checks failed: {type(err).__name__}: "
                                                                f"{snippet(err)}", "run make doctor")]

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(deadline.bound(HOST_TIMEOUT))
    if "findings" not in box:
        return [Row(STACK_ROW, "host", WARN, f"make doctor's checks did not finish within {HOST_TIMEOUT:.0f}s",
                    "run make doctor")], ""
    findings = box["findings"]
    if findings:
        archive.add_text("host/doctor.txt", doctor.render(findings))
    blocks = ""
    rows: list[Row] = []
    for f in findings:
        state = {"ok": OK, "warn": WARN}.get(f.status, FAIL)
        if state == FAIL and f.name in MEMORY_ROWS and stack_up:
            state = WARN  # the estimate counts nodes that already run
        if state == FAIL and f.name == "pulumi":
            state = WARN  # diagnose does not need it
        if state != OK:
            rows.append(Row(STACK_ROW, f"host: {f.name}", state, f.detail, f.fix))
        if state == FAIL and f.name in KIND_BLOCKERS:
            blocks = f"{f.name}: {f.detail}"
    if not any(r.state == FAIL for r in rows):
        rows.insert(0, Row(STACK_ROW, "host", OK, f"make doctor: {sum(f.status == 'ok' for f in findings)}/"
                                              f"{len(findings)} checks ok"))
    return rows, blocks


def network_row(plan: Any, stack: str, deadline: Deadline, archive: Archive, tools: Tools) -> Row:
    name, subnet = plan.network.name, plan.network.subnet
    ran = run_tool([tools.docker, "network", "inspect", name], deadline.bound(EXEC_TIMEOUT))
    archive.add_text("docker/network-inspect.json", ran.out or ran.err)
    try:
        nets = json.loads(ran.out) if ran.rc == 0 and ran.out.strip() else []
    except ValueError:
        nets = []
    net = next((n for n in nets if isinstance(n, dict) and n.get("Name") == name), None)
    if net is None:
        return Row(STACK_ROW, "docker network", FAIL, f"docker network {name} does not exist ({said(ran)})",
                   f"never brought up or destroyed: make up STACK={stack}")
    subnets = [str(c.get("Subnet")) for c in (net.get("IPAM") or {}).get("Config") or [] if isinstance(c, dict)]
    if subnet not in subnets:
        return Row(STACK_ROW, "docker network", FAIL, f"docker network {name} has subnet {', '.join(subnets) or 'none'}, "
                                                 f"planned {subnet}",
                   "make doctor's network row names the way out (put kindmesh:network.subnet back, or recreate the "
                   "stack)")
    return Row(STACK_ROW, "docker network", OK, f"{name} {subnet}")


def kind_clusters(deadline: Deadline, archive: Archive, tools: Tools) -> tuple[set[str] | None, str]:
    ran = run_tool([tools.kind, "get", "clusters"], deadline.bound(EXEC_TIMEOUT))
    archive.add_text("kind/get-clusters.txt", f"exit {ran.rc}\n{ran.out}\n{ran.err}")
    if ran.rc != 0:
        return None, said(ran)
    return {ln.strip() for ln in ran.out.splitlines() if ln.strip()}, ""


def export_logs(kind_name: str, tools: Tools, deadline: Deadline, archive: Archive, tmp: Path) -> None:
    """``kind export logs`` of one cluster into the archive, bounded by the deadline."""
    try:
        _export_logs(kind_name, tools, deadline, archive, tmp)
    except Exception as err:  # e.g. the run ended and removed the directory meanwhile: a note, not a traceback
        archive.add_text(f"kind-logs/{kind_name}/NOT-EXPORTED", f"{type(err).__name__}: {snippet(err)}\n")


def _export_logs(kind_name: str, tools: Tools, deadline: Deadline, archive: Archive, tmp: Path) -> None:
    target = tmp / kind_name
    try:
        timeout = deadline.bound(LOGS_TIMEOUT) - GRACE
    except OutOfTime:
        return
    if timeout <= 1:
        archive.add_text(f"kind-logs/{kind_name}/NOT-EXPORTED", "no time left under the deadline\n")
        return
    ran = run_tool([tools.kind, "export", "logs", str(target), "--name", kind_name], timeout)
    archive.add_text(f"kind-logs/{kind_name}/export.txt", f"exit {ran.rc}\n{ran.out}\n{ran.err}")
    if target.is_dir():
        archive.add_tree(f"kind-logs/{kind_name}", target)


# ----------------------------------------------------------------------------- the run
@dataclass
class Report:
    rows: list[Row]
    archive_path: Path | None
    exit_code: int
    note: str = ""


def diagnose(stack: str, *, root: Path | None = None, timeout: float = DEFAULT_TIMEOUT, tools: Tools | None = None,
             host_check: Callable[[str, Path], list[doctor.Finding]] | None = None,
             now: datetime.datetime | None = None, clock: Callable[[], float] = time.monotonic) -> Report:
    root = root or Path.cwd()
    tools = tools or Tools()
    deadline = Deadline(timeout, clock)
    plan, stack_finding = doctor.load_stack_plan(stack, root)
    if plan is None:
        return Report([Row(STACK_ROW, "stack", FAIL, stack_finding.detail, stack_finding.fix)], None, 2,
                      "could not run: the stack's plan cannot be read")
    archive = Archive()
    kubeconfig = context_file.path_for(stack, root)
    with contextlib.suppress(OSError, yaml.YAMLError):
        text = kubeconfig.read_text()
        archive.known += kubeconfig_secrets(text)
        archive.add_text("kubeconfig.redacted.yaml", yaml.safe_dump(redact_object(yaml.safe_load(text)), sort_keys=False))
    archive.add_json("plan.json", [{
        "name": c.name, "source": c.source, "kind_name": c.kind_name, "context": c.context,
        "nodes": list(c.node_names), "mesh_ip": c.mesh_ip, "hubble_ui_ip": c.hubble_ui_ip, "peers": list(c.peers),
        "demo": c.demo.enabled} for c in plan.clusters])
    rows: list[Row] = []
    has_kind = any(c.source == "kind" for c in plan.clusters)
    known_kind: set[str] | None = set()
    kind_error = ""
    if has_kind:
        known_kind, kind_error = kind_clusters(deadline, archive, tools)
    stack_up = bool(known_kind and any(c.kind_name in known_kind for c in plan.clusters)) or kubeconfig.exists()
    host, blocks = host_rows(stack, root, deadline, archive, stack_up, host_check or _doctor_check)
    rows += host
    if has_kind and not blocks and known_kind is None:
        blocks = f"kind get clusters: {kind_error}"
        rows = [r for r in rows if not (r.layer == "host" and r.state == OK)]
        rows.append(Row(STACK_ROW, "host: kind", FAIL, blocks, doctor.INSTALL["kind"].format(kind="0.30.0")))
    network_ok = True
    if has_kind and not blocks:
        net = network_row(plan, stack, deadline, archive, tools)
        rows.append(net)
        network_ok = net.state == OK
    with tempfile.TemporaryDirectory(prefix="kindmesh-diagnose-") as tmp:
        exports = []
        if has_kind and not blocks and known_kind:
            for c in plan.clusters:
                if c.source == "kind" and c.kind_name in known_kind:
                    t = threading.Thread(target=export_logs, args=(c.kind_name, tools, deadline, archive, Path(tmp)),
                                         daemon=True)
                    t.start()
                    exports.append(t)
        walks = [ClusterWalk(stack, plan, c, kubeconfig=kubeconfig, archive=archive, deadline=deadline, tools=tools,
                             kind_clusters=known_kind, network_ok=network_ok, host_blocks_kind=blocks)
                 for c in plan.clusters]
        for w in walks:
            threading.Thread(target=w.run, daemon=True).start()
        for w in walks:
            if not w.done.wait(max(0.0, deadline.left() + GRACE)):
                w.rows.append(Row(w.name, w.layer or "?", FAIL,
                                  f"no answer within the {timeout:.0f}s deadline (a call hung at this layer)",
                                  f"run again with more time: python -m kindmesh.cli.diagnose --stack {stack} "
                                  "--timeout 120"))
            rows += list(w.rows)
        for t in exports:
            t.join(max(0.0, deadline.left() + GRACE))  # one end for all: GRACE past the deadline
        problem = any(r.state == FAIL for r in rows)
        archive.add_text("report.txt", render(rows, stack))
        stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%dT%H%M%SZ")
        path = kubeconfig.parent / f"diagnose-{stamp}.tar.gz"
        written: Path | None = path
        note = ""
        try:
            _ensure_ignored(kubeconfig.parent.parent)
            archive.write(path)
        except OSError as err:
            note = f"the archive could not be written to {path}: {err.strerror or err}"
            written = None
    return Report(rows, written, 1 if problem else 0, note)


def _doctor_check(stack: str, root: Path) -> list[doctor.Finding]:
    return doctor.diagnose(stack, root=root)


def _ensure_ignored(base: Path) -> None:
    """``.kindmesh/.gitignore`` (as the kubeconfig file writes it): archives are never committed."""
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    context_file.ignore_all(base)


def render(rows: list[Row], stack: str) -> str:
    head = ("CLUSTER", "LAYER", "STATE", "EVIDENCE")
    table = [head] + [(r.cluster, r.layer, r.state, r.evidence) for r in rows]
    w = [max(len(t[i]) for t in table) for i in range(3)]
    pad = " " * (w[0] + w[1] + w[2] + 6)
    lines = []
    for r, t in zip([None, *rows], table, strict=True):
        lines.append(f"{t[0]:<{w[0]}}  {t[1]:<{w[1]}}  {t[2]:<{w[2]}}  {t[3]}")
        if r is not None and r.fix and r.state != OK:
            lines.append(f"{pad}fix: {r.fix}")
    broken = [r for r in rows if r.state == FAIL]
    if broken:
        where = ", ".join(f"{r.cluster} at {r.layer}" for r in broken)
        lines.append(f"{len(broken)} problem(s): {where}. kubectl commands assume "
                     f"eval \"$(make -s env STACK={stack})\"")
    else:
        lines.append(f"every layer healthy; make verify STACK={stack} checks the mesh end to end")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kindmesh.cli.diagnose",
        description="Find the broken layer of a kindmesh stack (host, docker network, kind nodes, Kubernetes API, "
                    "nodes, Cilium, MetalLB, ClusterMesh, demo) and say what to do; read-only. Exit 0: healthy, "
                    "1: a problem found, 2: could not run.")
    parser.add_argument("--stack", metavar="NAME", default=os.environ.get("STACK", "dev"),
                        help="the stack, read from Pulumi.NAME.yaml in the current directory (default: $STACK or dev)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds for the whole run, every call included (default {DEFAULT_TIMEOUT:.0f})")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    if not context_file.STACK_RE.match(args.stack) or ".." in args.stack:
        print(f"kindmesh diagnose: not a stack name: {args.stack[:100]!r}", file=sys.stderr)
        return 2
    if not 1 <= args.timeout <= 3600:
        print("kindmesh diagnose: --timeout must be between 1 and 3600 seconds", file=sys.stderr)
        return 2
    try:
        report = diagnose(args.stack, timeout=args.timeout)
    except Exception as err:  # a bug: one line, exit 2, never a traceback
        print(f"kindmesh diagnose: could not run: {type(err).__name__}: {snippet(err)}", file=sys.stderr)
        return 2
    print(f"kindmesh diagnose (stack {args.stack})")
    print(render(report.rows, args.stack))
    if report.archive_path is not None:
        print(f"everything read (secrets redacted): {report.archive_path}")
    if report.note:
        print(f"kindmesh diagnose: {report.note}", file=sys.stderr)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
