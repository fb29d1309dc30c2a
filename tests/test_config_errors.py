"""Every invalid configuration is rejected, naming the key and the fix, all at once."""

from __future__ import annotations

import pytest

from kindmesh.core.config import ConfigError
from kindmesh.core.planner import load_plan

BASE_NET = {"subnet": "172.30.0.0/16"}


def problems(raw):
    with pytest.raises(ConfigError) as err:
        load_plan(raw, stack="dev")
    return err.value, str(err.value)


CASES = [
    ("missing clusters", {}, "kindmesh:clusters", "required"),
    ("empty clusters", {"clusters": []}, "kindmesh:clusters", "non-empty"),
    ("duplicate name", {"clusters": [{"name": "us", "id": 1}, {"name": "us", "id": 2}]}, "kindmesh:clusters[1].name", "duplicate"),
    ("duplicate id", {"clusters": [{"name": "us", "id": 3}, {"name": "eu", "id": 3}]},
     "kindmesh:clusters[1].id", "duplicate"),
    ("missing id", {"clusters": [{"name": "us", "id": 1}, {"name": "eu"}]},
     "kindmesh:clusters[1].id", "add `id: 2`"),
    ("bad name", {"clusters": [{"name": "US_East", "id": 1}]}, "kindmesh:clusters[0].name", "DNS label"),
    ("name ends with dash", {"clusters": [{"name": "us-", "id": 1}]}, "kindmesh:clusters[0].name", "DNS label"),
    ("name too long", {"clusters": [{"name": "a" * 33, "id": 1}]}, "kindmesh:clusters[0].name", "at most 32"),
    ("name default", {"clusters": [{"name": "default", "id": 1}]}, "kindmesh:clusters[0].name", "reserved"),
    ("id zero", {"clusters": [{"name": "us", "id": 0}]}, "kindmesh:clusters[0].id", "1..255"),
    ("id too big", {"clusters": [{"name": "us", "id": 256}]}, "kindmesh:clusters[0].id", "1..255"),
    ("id not int", {"clusters": [{"name": "us", "id": "one"}]}, "kindmesh:clusters[0].id", "integer"),
    ("negative workers", {"clusters": [{"name": "us", "id": 1, "workers": -1}]}, "kindmesh:clusters[0].workers", "negative"),
    ("malformed pod cidr", {"clusters": [{"name": "us", "id": 1, "podSubnet": "10.1.0.0/33"}]},
     "kindmesh:clusters[0].podSubnet", "not a valid"),
    ("host bits set", {"clusters": [{"name": "us", "id": 1, "serviceSubnet": "10.1.0.1/24"}]},
     "kindmesh:clusters[0].serviceSubnet", "not a valid"),
    ("pod vs pod", {"clusters": [{"name": "us", "id": 1, "podSubnet": "10.50.0.0/16"}, {"name": "eu", "id": 2, "podSubnet": "10.50.0.0/17"}]},
     "kindmesh:clusters[1].podSubnet", "overlaps"),
    ("service vs service", {"clusters": [{"name": "us", "id": 1, "serviceSubnet": "10.60.0.0/20"},
                                         {"name": "eu", "id": 2, "serviceSubnet": "10.60.0.0/20"}]},
     "kindmesh:clusters[1].serviceSubnet", "overlaps"),
    ("pod vs service", {"clusters": [{"name": "us", "id": 1, "podSubnet": "10.70.0.0/16", "serviceSubnet": "10.70.128.0/20"}]},
     "kindmesh:clusters[0].serviceSubnet", "overlaps"),
    ("pod vs docker", {"clusters": [{"name": "us", "id": 1, "podSubnet": "172.30.0.0/17"}]},
     "kindmesh:clusters[0].podSubnet", "docker subnet"),
    ("service vs docker", {"clusters": [{"name": "us", "id": 1, "serviceSubnet": "172.30.16.0/20"}]},
     "kindmesh:clusters[0].serviceSubnet", "docker subnet"),
    ("subnet too small for pools", {"clusters": [{"name": "us", "id": 9}], "network": {"subnet": "172.30.0.0/26"}},
     "kindmesh:network.subnet", "pools"),
    ("subnet too small for nodes", {"clusters": [{"name": "us", "id": 1, "workers": 40}], "network": {"subnet": "172.30.0.0/26"}},
     "kindmesh:network.subnet", "nodes"),
    ("subnet at the bottom of the space", {"clusters": [{"name": "us", "id": 255}], "network": {"subnet": "0.0.0.0/26"}},
     "kindmesh:network.subnet", "unspecified"),
    ("subnet tiny", {"clusters": [{"name": "us", "id": 1}], "network": {"subnet": "172.30.0.0/30"}},
     "kindmesh:network.subnet", "too small"),
    ("subnet malformed", {"clusters": [{"name": "us", "id": 1}], "network": {"subnet": "300.1.0.0/16"}},
     "kindmesh:network.subnet", "not a valid"),
    ("hub missing", {"clusters": [{"name": "us", "id": 1}, {"name": "eu", "id": 2}], "mesh": {"topology": "hub"}},
     "kindmesh:mesh.hub", "required"),
    ("hub unknown", {"clusters": [{"name": "us", "id": 1}, {"name": "eu", "id": 2}], "mesh": {"topology": "hub", "hub": "ap"}},
     "kindmesh:mesh.hub", "not one of"),
    ("unknown topology", {"clusters": [{"name": "us", "id": 1}], "mesh": {"topology": "star"}},
     "kindmesh:mesh.topology", "full, hub, none"),
    ("unknown top key", {"clusters": [{"name": "us", "id": 1}], "cluster": []}, "kindmesh:cluster", "did you mean 'clusters'"),
    ("unknown cluster key", {"clusters": [{"name": "us", "id": 1, "worker": 2}]}, "kindmesh:clusters[0].worker",
     "did you mean 'workers'"),
    ("unknown mesh key", {"clusters": [{"name": "us", "id": 1}], "mesh": {"topolgy": "full"}}, "kindmesh:mesh.topolgy",
     "did you mean 'topology'"),
    ("bad affinity", {"clusters": [{"name": "us", "id": 1, "demo": {"affinity": "near"}}]},
     "kindmesh:clusters[0].demo.affinity", "local, remote, none"),
    ("bad encryption", {"clusters": [{"name": "us", "id": 1}], "cilium": {"encryption": "ipsec"}},
     "kindmesh:cilium.encryption", "none, wireguard"),
    ("unpinned node image", {"clusters": [{"name": "us", "id": 1}], "kind": {"nodeImage": "kindest/node:v1.34.0"}},
     "kindmesh:kind.nodeImage", "digest"),
    ("pool size", {"clusters": [{"name": "us", "id": 1}], "network": {"poolSize": 2}}, "kindmesh:network.poolSize", "out of range"),
    ("clusters not a list", {"clusters": {"us": {}}}, "kindmesh:clusters", "list"),
    ("unknown source", {"clusters": [{"name": "us", "id": 1, "source": "eks"}]}, "kindmesh:clusters[0].source", "kind"),
]


@pytest.mark.parametrize("label,raw,key,fragment", CASES, ids=[c[0] for c in CASES])
def test_invalid_config_is_rejected_with_key_and_fix(label, raw, key, fragment):
    raw = dict(raw)
    raw.setdefault("network", BASE_NET)
    err, text = problems(raw)
    hits = [p for p in err.problems if p.key == key]
    assert hits, f"no problem reported for {key}: {text}"
    assert any(fragment in p.message for p in hits), text


def test_all_problems_are_reported_in_one_error():
    raw = {
        "clusters": [{"name": "Bad_Name", "id": 999}, {"name": "ok", "id": 2, "workers": -2, "podSubnet": "nope"}],
        "mesh": {"topology": "hub"},
        "network": {"subnet": "172.30.0.0/16"},
        "typo": 1,
    }
    err, text = problems(raw)
    keys = {p.key for p in err.problems}
    assert {"kindmesh:clusters[0].name", "kindmesh:clusters[0].id", "kindmesh:clusters[1].workers",
            "kindmesh:clusters[1].podSubnet", "kindmesh:mesh.hub", "kindmesh:typo"} <= keys
    assert text.count("\n  - ") == len(err.problems)


def test_gate_timeouts_are_bounded_and_reach_the_gates():
    _, text = problems({"clusters": [{"name": "us", "id": 1}], "network": BASE_NET,
                        "timeouts": {"rollout": 5, "webhook": "soon", "lb": 60}})
    assert "kindmesh:timeouts.rollout" in text and "10..86400" in text
    assert "kindmesh:timeouts.webhook" in text and "whole number" in text
    assert "kindmesh:timeouts" in text and "lb" in text
    plan = load_plan({"clusters": [{"name": "us", "id": 1}], "network": BASE_NET,
                      "timeouts": {"rollout": 30, "loadBalancer": "45"}}, stack="dev")
    assert (plan.config.timeouts.rollout, plan.config.timeouts.webhook, plan.config.timeouts.load_balancer) == (30, 600, 45)
