"""What the pure core decides and renders for each shipped stack, as canonical JSON.

``snapshot(case)`` plans a stack file (``Pulumi.<stack>.yaml``, the top-level ones), the
two-cluster-mesh example's inline config, or one of a few extra variants (existing clusters
behind a pool or an IP, a mixed-version mesh with moved values), and renders everything the
core renders per cluster: the plan itself, the kind config, the Cilium values (alone, and
with peers and a fixed CA), the MetalLB values, pools and L2 advertisement, the gates'
workloads and planned LoadBalancer services, the demo manifests, the images, and the stack
outputs (cluster table, mermaid, verification spec).

The files in tests/golden/ were recorded from the code before the core was split into
layers (issue 25); tests/test_golden.py checks that the code still gives them byte for
byte. Record again only for an intended change of behaviour, and review the diff:

    .venv/bin/python -m tests.golden            # rewrite every file
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import ROOT, SHIPPED_STACKS, stack_raw

GOLDEN = Path(__file__).resolve().parent / "golden"
PROBLEMS = "problems"  # the golden file of BAD_CONFIGS' problems
CA = ("CA-CERT-B64", "CA-KEY-B64")  # stands in for the stack's CA (Outputs in a real run)


def fake_kubeconfig(server: str, token: str) -> str:
    """A kubeconfig as content (no file: the golden files must not name a temporary path)."""
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "default",
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority-data": "Q0E="}}],
        "contexts": [{"name": "default", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": token}}],
    }, sort_keys=True)


def example_config(example: str) -> dict[str, Any]:
    """The literal ``config={…}`` given to ``MeshArgs`` in ``examples/<example>/__main__.py``
    (in the call, or the module-level ``name = {…}`` the call names)."""
    tree = ast.parse((ROOT / "examples" / example / "__main__.py").read_text())
    literals = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name) and isinstance(node.value, ast.Dict)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "MeshArgs":
            for kw in node.keywords:
                if kw.arg == "config":
                    value = literals.get(kw.value.id, kw.value) if isinstance(kw.value, ast.Name) else kw.value
                    return dict(ast.literal_eval(value))
    raise LookupError(f"no MeshArgs(config=...) literal in examples/{example}")


def _remote() -> dict[str, Any]:
    raw = copy.deepcopy(stack_raw("remote"))
    for i, cluster in enumerate(raw["clusters"]):  # the stack names files in ~/.kube: content here
        cluster["kubeconfig"] = fake_kubeconfig(f"https://192.168.56.{11 + i}:6443", f"token-{i}")
    return raw


def _variant_existing_lb() -> dict[str, Any]:
    """A kind cluster and two existing ones: one behind a MetalLB pool of ours, one behind its own LB IP."""
    return {
        "clusters": [
            {"name": "local", "id": 1, "workers": 0},
            {"name": "pooled", "id": 5, "source": "existing",
             "kubeconfig": fake_kubeconfig("https://192.0.2.5:6443", "t5"),
             "podSubnet": "10.50.0.0/16", "serviceSubnet": "10.150.0.0/16", "ipam": "cluster-pool",
             "meshEndpoint": {"loadBalancer": {"pool": "192.0.2.240-192.0.2.250"}},
             "cilium": {"values": {"operator": {"replicas": 2}}}},
            {"name": "own-lb", "id": 6, "source": "existing", "context": "default",
             "kubeconfig": fake_kubeconfig("https://192.0.2.6:6443", "t6"),
             "podSubnet": "10.60.0.0/16", "serviceSubnet": "10.160.0.0/16", "ipam": "kubernetes",
             "meshEndpoint": {"loadBalancer": {"ip": "192.0.2.200"}}},
        ],
        "mesh": {"topology": "hub", "hub": "local", "routable": True},
        "network": {"subnet": "172.29.0.0/16", "poolSize": 32},
        "cilium": {"hubbleMetrics": ["dns", "drop:sourceContext=pod"]},
    }


def _variant_mixed_versions() -> dict[str, Any]:
    """A mesh mid-upgrade: 1.19 and 1.20 clusters, stack values on a path that moved in 1.20."""
    return {
        "clusters": [
            {"name": "old", "id": 3, "workers": 2, "cilium": {"version": "1.19.6",
                                                               "values": {"debug": {"enabled": True}}}},
            {"name": "new", "id": 4, "podSubnet": "10.44.0.0/16", "serviceSubnet": "10.144.0.0/20",
             "cilium": {"values": {"clustermesh": {"defaultGlobalNamespace": True}}},
             "demo": {"affinity": "remote", "shared": False}},
        ],
        "cilium": {"version": "1.20.0", "encryption": "wireguard", "hubbleUi": False,
                   "values": {"clustermesh": {"apiserver": {"tls": {"server": {"extraDnsNames": ["mesh.example"]}}}}}},
        "kind": {"prePull": False},
        "demo": {"policy": True},
        "network": {"name": "lab-net", "subnet": "172.28.0.0/24", "poolSize": 8},
    }


def cases() -> dict[str, tuple[str, dict[str, Any]]]:
    """golden name -> (stack name, raw ``kindmesh:`` keys)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for stack in SHIPPED_STACKS:
        out[stack] = (stack, _remote() if stack == "remote" else stack_raw(stack))
    out["example-two-cluster-mesh"] = ("lab", example_config("two-cluster-mesh"))
    out["variant-existing-lb"] = ("Team_A", _variant_existing_lb())
    out["variant-mixed-versions"] = ("mixed", _variant_mixed_versions())
    return out


def plan_data(plan: Any) -> dict[str, Any]:
    """The plan's fields, without those derived from the others (``metadata["derived"]``: the
    pre-pull lists the planner stores; their content is recorded as ``images`` below)."""
    data = dataclasses.asdict(plan)
    for f in dataclasses.fields(plan):
        if f.metadata.get("derived"):
            del data[f.name]
    return data


def snapshot(name: str) -> dict[str, Any]:
    from kindmesh.core.demo import expected_backends, manifests, verification_spec
    from kindmesh.core.planner import load_plan
    from kindmesh.core.render import (
        cilium_values,
        cluster_table,
        hubble_ui_url,
        ip_address_pool,
        kind_config_yaml,
        l2_advertisement,
        mermaid,
        metallb_values,
        metallb_workloads,
        node_labels,
        planned_lb_services,
        reserved_address_pool,
        reserved_ips,
        rollout_workloads,
    )

    stack, raw = cases()[name]
    plan = load_plan(copy.deepcopy(raw), stack=stack, project="kindmesh")
    clusters: dict[str, Any] = {}
    for cluster in plan.clusters:
        alone = cilium_values(plan, cluster)
        meshed = cilium_values(plan, cluster, peers=plan.peer_entries(cluster.name), ca=CA)
        entry: dict[str, Any] = {
            "ciliumValues": alone,
            "ciliumValuesMeshed": meshed,
            "rolloutWorkloads": rollout_workloads(alone),
            "plannedLbServices": planned_lb_services(alone),
            "peerEntries": plan.peer_entries(cluster.name),
            "reservedIps": reserved_ips(cluster),
            "nodeLabels": node_labels(plan, cluster),
            "hubbleUiUrl": hubble_ui_url(cluster),
            "ciliumVersion": plan.cilium_version(cluster),
            "demoManifests": manifests(plan, cluster) if plan.config.demo.enabled else None,
            "expectedBackends": {svc: expected_backends(plan, cluster, svc) for svc in ("echo", "echo-global")},
            "pool": cluster.pool,
            "meshEndpoint": cluster.mesh_endpoint,
        }
        if cluster.source == "kind":
            entry["kindConfigYaml"] = kind_config_yaml(plan, cluster)
            entry["images"] = list(plan.images_for(cluster))
        if cluster.pool_first:
            entry["metallbValues"] = metallb_values()
            entry["metallbWorkloads"] = metallb_workloads(metallb_values())
            entry["ipAddressPool"] = ip_address_pool(plan, cluster)
            entry["reservedAddressPool"] = reserved_address_pool(plan, cluster)
            entry["l2Advertisement"] = l2_advertisement(plan, cluster)
        clusters[cluster.name] = entry
    return {
        "case": name,
        "stack": stack,
        "plan": plan_data(plan),
        "stackLabel": plan.stack_label,
        "images": list(plan.images),
        "clusters": clusters,
        "clusterTable": cluster_table(plan),
        "mermaid": mermaid(plan),
        "verification": verification_spec(plan),
    }


# Configs that are wrong in many ways at once: the problems the parser and planner report.
BAD_CONFIGS: dict[str, dict[str, Any]] = {
    "keys-and-ids": {"clusters": [{"name": "us", "id": 0, "wrokers": 1}, {"name": "us"}, {"name": "Bad_Name", "id": 2},
                                  {"name": "eu", "id": 2, "workers": -1}],
                     "mesh": {"topology": "hub"}, "netwrok": {}, "cilium.version": "1.19.6"},
    "network": {"clusters": [{"name": "a", "id": 1, "podSubnet": "172.30.0.0/16"}, {"name": "b", "id": 300}],
                "network": {"subnet": "172.30.0.0/29", "name": "bridge", "poolSize": 2}},
    "docker0": {"clusters": [{"name": "a", "id": 1}], "network": {"subnet": "172.17.0.0/16"}},
    "versions": {"clusters": [{"name": "a", "id": 1, "cilium": {"version": "1.18.0"}},
                              {"name": "b", "id": 2, "cilium": {"version": "1.19.6", "values": {
                                  "clustermesh": {"defaultGlobalNamespace": True}}}}],
                 "cilium": {"version": "1.20.9", "hubble": False, "hubbleMetrics": ["dns", "nope"],
                            "values": {"cluster": {"name": "x"}, "tls": {"ca": "y"}}},
                 "metallb": {"version": "0.14.0"}, "kind": {"nodeImage": "kindest/node:v1.30.0"}},
    "existing": {"clusters": [
        {"name": "k1", "id": 1, "source": "existing", "kubeconfig": "not yaml: [", "workers": 2,
         "meshEndpoint": {"nodePort": 80, "nodeIPs": ["127.0.0.1", "x"]}},
        {"name": "k2", "id": 2, "source": "existing", "podSubnet": "10.2.0.0/16", "serviceSubnet": "10.3.0.0/16",
         "kubeconfig": "apiVersion: v1\nclusters: []\ncontexts: []\n", "apiServer": "host",
         "meshEndpoint": {"loadBalancer": {"pool": "192.0.2.9-192.0.2.1"}}},
        {"name": "kind1", "id": 3, "apiServer": "1.2.3.4:6443"}]},
}


def problems_snapshot() -> dict[str, list[str]]:
    """The problems (key, message) each of BAD_CONFIGS gives, in the order reported."""
    from kindmesh.core.config import ConfigError
    from kindmesh.core.planner import load_plan

    out: dict[str, list[str]] = {}
    for name, raw in BAD_CONFIGS.items():
        try:
            load_plan(copy.deepcopy(raw), stack="dev")
        except ConfigError as err:
            out[name] = [str(p) for p in err.problems]
        else:
            out[name] = []
    return out


def canonical(data: Any) -> str:
    """Sorted keys, fixed indentation, no float or type reprs: byte-stable text."""
    return json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def path_of(name: str) -> Path:
    return GOLDEN / f"{name}.json"


def main(argv: list[str]) -> int:
    GOLDEN.mkdir(exist_ok=True)
    names = argv or [*cases(), PROBLEMS]
    for name in names:
        data = problems_snapshot() if name == PROBLEMS else snapshot(name)
        path_of(name).write_text(canonical(data))
        print(f"wrote {path_of(name).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
