"""The cluster tier: what the program does inside the clusters, against real API servers.

Runs without the Pulumi engine (for when its provider plugins cannot be built here; see
docs/integration.md): each step is the *same code* the program's commands run, fed with
the same plain data the composition computes, in the same order the engine would run it —

1. the docker network as the docker provider would create it (the program's options);
2. ``python -m kindmesh.deploy.kindctl prepull`` and ``create`` with the exact spec the
   program puts in ``$KINDMESH_KIND_SPEC`` (fake ``kind``: a real API server + kwok nodes);
3. the real Cilium and MetalLB charts (``../shared/upstream/charts``, or ``kindmesh:charts``)
   installed by a real Helm (built by ``make tools``, the Helm library pulumi-kubernetes
   embeds) with the values the program renders, peers and shared CA included;
4. the readiness gates, as their commands run (``python -m kindmesh.deploy.gate_cmd``);
5. the address pool and L2 advertisement, then the LoadBalancer IPs every cluster's
   clustermesh-apiserver (and Hubble UI) must get: the planned mesh IPs;
6. ``python -m kindmesh.deploy.context_file add`` and ``kubectl`` against every cluster;
7. an in-place chart upgrade of every cluster one at a time, gates after each; then
   ``kindctl delete`` and the network removed: nothing left.

What a real controller does and kwok does not is done by tests/integration/world.py.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration import simcluster

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Step:
    scenario: str
    step: str
    seconds: float
    ok: bool
    detail: str = ""
    problems: list[str] = field(default_factory=list)


def _run(argv: list[str], env: dict[str, str], *, input_text: str | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, input=input_text, capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=REPO)


def _ca() -> tuple[str, str]:
    """A ClusterMesh CA as the tls provider makes it: (cert, key), base64 PEM."""
    from cryptography.hazmat.primitives import serialization
    cert, key = simcluster.make_ca("kindmesh cluster-tier ClusterMesh CA")
    pem_cert = cert.public_bytes(serialization.Encoding.PEM)
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    return base64.b64encode(pem_cert).decode(), base64.b64encode(pem_key).decode()


class ClusterTier:
    def __init__(self, name: str, raw: dict[str, Any], env: dict[str, str], workdir: Path,
                 existing: dict[str, Path] | None = None):
        from kindmesh.core.planner import load_plan
        self.name, self.env, self.workdir = name, env, workdir
        self.raw = raw
        self.plan = load_plan(raw, stack=name, project="kindmesh")
        self.existing = existing or {}
        self.rows: list[Step] = []
        self.kubeconfigs: dict[str, Path] = {}
        self.ca = _ca()

    # ------------------------------------------------------------------ helpers
    def step(self, what: str, fn: Any) -> bool:
        t0 = time.monotonic()
        try:
            detail = fn() or ""
            problems: list[str] = []
        except StepFailed as exc:
            detail, problems = "", [str(exc)]
        row = Step(self.name, what, round(time.monotonic() - t0, 1), not problems, str(detail), problems)
        self.rows.append(row)
        mark = "ok  " if row.ok else "FAIL"
        print(f"  {mark} {self.name:<10} {what:<44} {row.seconds:>6.1f}s  {row.detail[:70]}", flush=True)
        for p in problems:
            print("       " + p.replace("\n", "\n       ")[:3000], flush=True)
        return row.ok

    def cmd(self, argv: list[str], env: dict[str, str] | None = None, what: str = "", **kw: Any) -> str:
        proc = _run(argv, {**self.env, **(env or {})}, **kw)
        if proc.returncode != 0:
            raise StepFailed(f"{what or ' '.join(argv[:4])} exited {proc.returncode}: "
                             f"{(proc.stderr or proc.stdout).strip()[-1500:]}")
        return proc.stdout

    # ------------------------------------------------------------------ the steps
    def network(self) -> str:
        from stacks.composition import DOCKER_REPORTED_OPTIONS
        from tests.integration import fake_docker
        plan = self.plan
        body = {"Name": plan.network.name, "Driver": "bridge",
                "Options": {"com.docker.network.bridge.enable_ip_masquerade": "true", **DOCKER_REPORTED_OPTIONS},
                "IPAM": {"Driver": "default", "Config": [{"Subnet": plan.network.subnet, "Gateway": plan.network.gateway,
                                                          "IPRange": plan.network.node_range}]},
                "Labels": {"kindmesh.io/stack": plan.stack_label}}
        try:
            fake_docker.api_json("POST", "/networks/create", body)
        except fake_docker.ApiError as err:
            raise StepFailed(f"docker network create: {err.message}") from None
        got = fake_docker.api_json("GET", f"/networks/{plan.network.name}")["Options"]
        if got != body["Options"]:
            raise StepFailed(f"the daemon reports other options than the program asks for: {got}")
        return plan.network.name

    def kind_clusters(self) -> str:
        from kindmesh.components.kind_cluster import host_image_specs
        from stacks.composition import cluster_inputs
        images = {"images": host_image_specs(list(self.plan.images))}
        self.cmd([sys.executable, "-m", "kindmesh.deploy.kindctl", "prepull"],
                 {"KINDMESH_IMAGES_SPEC": json.dumps(images)}, "kindctl prepull")
        made = []
        from kindmesh.components.kind_cluster import cluster_spec, load_spec
        for c in self.plan.clusters:
            if c.source != "kind":
                continue
            spec = cluster_inputs(self.plan, c)
            create = {"KINDMESH_KIND_SPEC": json.dumps(cluster_spec(spec), sort_keys=True)}
            out = self.cmd([sys.executable, "-m", "kindmesh.deploy.kindctl", "create"], create, f"kindctl create {c.name}")
            action = json.loads(out)["action"]
            again = json.loads(self.cmd([sys.executable, "-m", "kindmesh.deploy.kindctl", "update"], create))["action"]
            if action != "created" or again != "updated":
                raise StepFailed(f"{c.name}: kindctl said {action!r} then {again!r}")
            self.cmd([sys.executable, "-m", "kindmesh.deploy.kindctl", "load"],
                     {"KINDMESH_KIND_SPEC": json.dumps(load_spec(spec), sort_keys=True)}, f"kindctl load {c.name}")
            loaded = simcluster.world_dir() / "clusters" / c.kind_name / "loaded-images.jsonl"
            if spec["images"] and not loaded.exists():
                raise StepFailed(f"{c.name}: kindctl load loaded no image into the nodes")
            path = self.workdir / f"{c.name}.kubeconfig"
            path.write_text(self.cmd(["kind", "get", "kubeconfig", "--name", c.kind_name]))
            path.chmod(0o600)
            self.kubeconfigs[c.name] = path
            made.append(c.kind_name)
        for name, path in self.existing.items():
            self.kubeconfigs[name] = path
        return ", ".join(made) or "no kind clusters"

    def cilium_values(self, cluster: Any, version: str | None = None) -> dict[str, Any]:
        from kindmesh.components.mesh_connection import MeshConnectionArgs
        from kindmesh.core.render import cilium_values, mesh_values, overlay
        from stacks.composition import mesh_members
        args: MeshConnectionArgs = mesh_members(self.plan)
        by_name = {m.name: m for m in args.members}
        peers = [{"name": p, "port": by_name[p].port, "ips": list(by_name[p].ips)} for p in args._peers[cluster.name]]
        return overlay(cilium_values(self.plan, cluster), mesh_values(cluster.name, cluster.id, peers, self.ca))

    def helm(self, cluster: Any, release: str, chart: str, version: str, namespace: str, values: dict[str, Any],
             *, wait: bool, upgrade: bool = False) -> None:
        from kindmesh.core.charts import chart_location
        source = getattr(self.plan.config.charts, release)
        where = chart_location(source, chart, version)
        if not where.local:
            raise StepFailed(f"kindmesh:charts.{release} is {source!r}: the cluster tier installs local charts only")
        vfile = self.workdir / f"{cluster.name}-{release}-values.json"
        vfile.write_text(json.dumps(values))
        argv = ["helm", "upgrade" if upgrade else "install", release, where.chart, "--namespace", namespace,
                "--create-namespace", "--values", str(vfile), "--kubeconfig", str(self.kubeconfigs[cluster.name]),
                "--timeout", "10m"]
        if wait:
            argv.append("--wait")
        self.cmd(argv, what=f"helm {argv[1]} {release} ({cluster.name})")

    def gate(self, cluster: Any, gate: str, spec: dict[str, Any]) -> str:
        env = {"KINDMESH_GATE_KUBECONFIG": self.kubeconfigs[cluster.name].read_text(),
               "KINDMESH_GATE_SPEC": json.dumps(spec)}
        return self.cmd([sys.executable, "-m", "kindmesh.deploy.gate_cmd", gate], env, f"gate {gate} ({cluster.name})").strip()

    def charts(self) -> str:
        from kindmesh.core.render import (
            CILIUM_NAMESPACE,
            METALLB_NAMESPACE,
            ip_address_pool,
            l2_advertisement,
            metallb_values,
            metallb_workloads,
            planned_lb_services,
            reserved_address_pool,
            rollout_workloads,
        )
        said = []
        for c in self.plan.clusters:
            values = self.cilium_values(c)
            self.helm(c, "cilium", "cilium", self.plan.cilium_version(c), CILIUM_NAMESPACE, values, wait=False)
            said.append(self.gate(c, "rollout", {"cluster": c.name, "workloads": rollout_workloads(values), "timeout": 300}))
            if c.source == "kind" or (c.existing is not None and c.existing.endpoint == "pool"):
                # as the program does: no Helm wait; the webhook gate waits for MetalLB's workloads first
                self.helm(c, "metallb", "metallb", self.plan.config.metallb.version, METALLB_NAMESPACE,
                          metallb_values(), wait=False)
                pool = ip_address_pool(self.plan, c)
                said.append(self.gate(c, "metallb-webhook", {"cluster": c.name, "pool": pool, "timeout": 600,
                                                             "workloads": metallb_workloads(metallb_values())}))
                # the auto-assigned pool, then the reserved one (the planned IPs), then the advertisement
                for obj in (pool, reserved_address_pool(self.plan, c), l2_advertisement(self.plan, c)):
                    self.cmd(["kubectl", "--kubeconfig", str(self.kubeconfigs[c.name]), "apply", "-f", "-"],
                             input_text=json.dumps(obj), what=f"kubectl apply {obj['kind']}")
                services = planned_lb_services(values)
                if services:  # as the program does: the planned LoadBalancer IPs were assigned
                    said.append(self.gate(c, "loadbalancer", {"cluster": c.name, "services": services,
                                                              "timeout": 120}))
            if self.plan.config.demo.enabled:
                # the demo after Cilium's rollout: its policies need the CRDs Cilium's operator installs
                from kindmesh.core.demo import manifests
                objs = manifests(self.plan, c)
                self.cmd(["kubectl", "--kubeconfig", str(self.kubeconfigs[c.name]), "apply", "-f", "-"],
                         input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}),
                         what=f"kubectl apply the demo ({c.name})")
                said.append(f"demo: {len(objs)} objects")
        return f"{len(said)} gates passed / objects applied"

    def upgrade(self, version: str) -> str:
        """One cluster at a time, as `make upgrade` does: that cluster's
        ``clusters[].cilium.version`` set, the stack re-planned (a mixed mesh is a valid
        plan), its release upgraded with the values rendered for its new version, then the
        rollout gate of *every* cluster."""
        import copy

        from kindmesh.core.planner import load_plan
        from kindmesh.core.render import CILIUM_NAMESPACE, rollout_workloads
        done = []
        for i, c in enumerate(self.plan.clusters):
            raw = copy.deepcopy(self.raw)
            for entry in raw["clusters"][: i + 1]:
                entry["cilium"] = dict(entry.get("cilium") or {}, version=version)
            self.raw = raw
            self.plan = load_plan(raw, stack=self.name, project="kindmesh")
            cluster = next(x for x in self.plan.clusters if x.name == c.name)
            if self.plan.cilium_version(cluster) != version:
                raise StepFailed(f"{c.name}: the plan kept Cilium {self.plan.cilium_version(cluster)}")
            values = self.cilium_values(cluster)
            self.helm(cluster, "cilium", "cilium", version, CILIUM_NAMESPACE, values, wait=False, upgrade=True)
            for other in self.plan.clusters:
                v = self.cilium_values(other)
                self.gate(other, "rollout", {"cluster": other.name, "workloads": rollout_workloads(v), "timeout": 300})
            done.append(f"{c.name}->{version}")
        return ", ".join(done)

    def load_balancer_ips(self) -> str:
        """Every cluster's clustermesh-apiserver gets its planned mesh IP (and Hubble UI its own)."""
        from kubernetes import client, config
        deadline = time.monotonic() + 120
        missing: list[str] = []
        delay = 0.2
        while True:
            missing = []
            for c in self.plan.clusters:
                if c.source != "kind" and not (c.existing is not None and c.existing.endpoint == "pool"):
                    continue
                api = client.CoreV1Api(config.new_client_from_config(str(self.kubeconfigs[c.name])))
                svc = api.read_namespaced_service("clustermesh-apiserver", "kube-system")
                ips = [i.ip for i in (svc.status.load_balancer.ingress or [])] if svc.status.load_balancer else []
                want = list(c.mesh_ips or (c.mesh_ip,))
                if sorted(ips) != sorted(want):
                    missing.append(f"{c.name}: clustermesh-apiserver has {ips or 'no IP'}, planned {want}")
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        if missing:
            raise StepFailed("; ".join(missing))
        return "planned mesh IPs assigned"

    def kubeconfig_file(self) -> str:
        for c in self.plan.clusters:
            self.cmd([sys.executable, "-m", "kindmesh.deploy.context_file", "add", "--stack", self.name, "--cluster",
                      c.name, "--root", str(self.workdir)], {"KINDMESH_KUBECONFIG": self.kubeconfigs[c.name].read_text()})
        path = self.workdir / ".kindmesh" / self.name / "kubeconfig"
        for c in self.plan.clusters:
            out = self.cmd(["kubectl", "--kubeconfig", str(path), "--context", c.name, "get", "nodes", "-o", "name"])
            if "node/" not in out:
                raise StepFailed(f"kubectl --context {c.name} lists no nodes")
        return str(path.relative_to(self.workdir))

    def teardown(self) -> str:
        from stacks.composition import cluster_inputs
        from tests.integration import fake_docker
        for c in self.plan.clusters:
            self.cmd([sys.executable, "-m", "kindmesh.deploy.context_file", "drop", "--stack", self.name, "--cluster",
                      c.name, "--root", str(self.workdir)])
            if c.source == "kind":
                out = self.cmd([sys.executable, "-m", "kindmesh.deploy.kindctl", "delete"],
                               {"KINDMESH_KIND_SPEC": json.dumps(cluster_inputs(self.plan, c), sort_keys=True)})
                if json.loads(out)["action"] != "deleted":
                    raise StepFailed(f"kindctl delete {c.name}: {out}")
            else:
                for release, ns in (("cilium", "kube-system"), ("metallb", "metallb-system")):
                    _run(["helm", "uninstall", release, "--namespace", ns, "--kubeconfig", str(self.kubeconfigs[c.name])],
                         self.env)
        fake_docker.api_json("DELETE", f"/networks/{self.plan.network.name}")
        left = [n["Name"] for n in fake_docker.api_json("GET", "/networks") if n["Name"] not in ("bridge", "host", "none")]
        kinds = [d for d in os.listdir(simcluster.world_dir() / "clusters") if d not in self.existing] \
            if (simcluster.world_dir() / "clusters").exists() else []
        if left or kinds or (self.workdir / ".kindmesh" / self.name / "kubeconfig").exists():
            raise StepFailed(f"left behind: networks {left}, clusters {kinds}")
        return "nothing left"

    def run(self, upgrade_to: str | None) -> list[Step]:
        steps: list[tuple[str, Any]] = [
            ("docker network (the program's options)", self.network),
            ("kindctl prepull + create (+ update is a no-op)", self.kind_clusters),
            ("charts + gates (cilium, metallb, pools, LB IPs)", self.charts),
            ("LoadBalancer IPs = planned mesh IPs", self.load_balancer_ips),
            ("kubeconfig file + kubectl", self.kubeconfig_file),
        ]
        if upgrade_to:
            steps.append((f"cilium upgrade to {upgrade_to}, cluster by cluster", lambda: self.upgrade(upgrade_to)))
        steps.append(("teardown: nothing left", self.teardown))
        for what, fn in steps:
            if not self.step(what, fn) and what != "teardown: nothing left":
                self.step("teardown after a failure", self.teardown)
                break
        return self.rows


class StepFailed(Exception):
    pass


def raw_config(doc: dict[str, Any]) -> dict[str, Any]:
    """A stack file's ``kindmesh:`` keys, as the program reads them (namespace stripped)."""
    return {k.split(":", 1)[1]: v for k, v in (doc.get("config") or {}).items() if k.startswith("kindmesh:")}
