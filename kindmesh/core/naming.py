"""Names and addresses the planner derives: kind names, network names, subnets and their layout.

Every function is deterministic and local to its inputs (a cluster's id and name, the
stack's name), so adding, removing or reordering clusters never changes another cluster's
names or addresses. Public helpers for programs built from the components alone:
:func:`network_layout` and :func:`pool_for`.

Network layout of the stack's docker subnet (IPv4)::

    network | gateway | node range (lower half: docker hands node IPs out here) ...
    ... | pools (upper half, slot k = id-1 counted from the top) | broadcast

Pure module: no ``pulumi`` import.

May import: model.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence

from kindmesh.core.model import HASH_LEN, digest, slug, stack_slug

# kind's own rule for cluster names, and our bound: "<name>-control-plane" stays a 63-char hostname
KIND_NAME_RE = re.compile(r"[a-z0-9.-]+")
KIND_NAME_MAX = 48
IPv4Net = ipaddress.IPv4Network
IPv4Addr = ipaddress.IPv4Address
# Default docker subnets are picked among these /16s by a hash of the stack name
# (docker0 is usually 172.17/16 and kind's own network 172.18/16: avoided).
DEFAULT_SUBNETS = tuple(f"172.{n}.0.0/16" for n in range(24, 32))
NODE_POD_PREFIX = 24  # kube-controller-manager's default IPv4 node CIDR mask (kind keeps it)


def network_name_for(stack: str) -> str:
    return f"kindmesh-{stack_slug(stack)}"


def kind_name_for(stack: str, cluster: str) -> str:
    """Deterministic kind cluster name; distinct (stack, cluster) pairs never share one.

    ``km-<stack>-<cluster>`` when the stack name is lowercase letters and digits only
    (``dev`` -> ``km-dev-us``): such a stack has no '-', so the name splits back into
    (stack, cluster) one way only. Every other pair gets ``km--<slug>-<cluster>-<hash>``,
    the hash over the exact (stack, cluster): the ``km--`` prefix never starts a name of
    the first form. At most 48 characters, so ``<name>-control-plane`` is a valid
    hostname (kind itself allows ``[a-z0-9.-]+``).
    """
    if re.fullmatch(r"[a-z0-9]+", stack):
        name = f"km-{stack}-{cluster}"
        if len(name) <= KIND_NAME_MAX:
            return name
    hashed = digest(stack, cluster)
    tail = f"{cluster[: KIND_NAME_MAX - 4 - HASH_LEN - 1]}-{hashed}".strip("-")
    room = KIND_NAME_MAX - len("km--") - len(tail) - 1
    head = slug(stack)[: max(room, 0)].strip("-")
    return f"km--{head}-{tail}" if head else f"km--{tail}"


def free_subnet(name: str, used: Iterable[str | IPv4Net], candidates: Sequence[str]) -> str | None:
    """The first of ``candidates`` overlapping none of ``used``, probing from a slot the name's
    hash picks (names spread out; the same name and ``used`` give the same subnet)."""
    taken = [ipaddress.ip_network(u, strict=False) for u in used]
    start = int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(candidates)
    for step in range(len(candidates)):
        candidate = candidates[(start + step) % len(candidates)]
        if not any(ipaddress.IPv4Network(candidate).overlaps(t) for t in taken):
            return candidate
    return None


def default_subnet(stack: str, avoid: Iterable[str | IPv4Net] = ()) -> str:
    """The stack's docker subnet when the config sets none: its hashed DEFAULT_SUBNETS slot,
    or the next one that overlaps nothing in ``avoid`` (another mesh of the same program)."""
    hashed = DEFAULT_SUBNETS[int(hashlib.sha256(stack.encode()).hexdigest(), 16) % len(DEFAULT_SUBNETS)]
    return free_subnet(stack, avoid, DEFAULT_SUBNETS) or hashed  # all taken: the caller reports the clash


def default_pod_subnet(cluster_id: int) -> str:
    return f"10.{cluster_id}.0.0/17"


def default_service_subnet(cluster_id: int) -> str:
    return f"10.{cluster_id}.128.0/20"


def network_layout(subnet: str) -> tuple[IPv4Net, IPv4Net]:
    """(node range, pool region) of a docker subnet: its lower and upper half.

    Public for programs built from the components alone: give docker the node range as the
    network's ``ip_range`` and carve MetalLB pools from the region (:func:`pool_for`), so
    docker never hands a node an address inside a pool."""
    net = ipaddress.IPv4Network(subnet)
    if net.prefixlen >= 31:
        raise ValueError("subnet too small")
    lower, upper = net.subnets(prefixlen_diff=1)
    return lower, upper


def pool_for(subnet: str, pool_size: int, cluster_id: int) -> tuple[IPv4Addr, IPv4Addr]:
    """Pool slot (id-1) counted from the top of the subnet, below the broadcast.

    Public (see :func:`network_layout`): ``(first, last)`` of cluster ``cluster_id``'s pool."""
    net = ipaddress.IPv4Network(subnet)
    last = int(net.broadcast_address) - 1 - (cluster_id - 1) * pool_size
    first = last - pool_size + 1
    # a slot below the address space only happens for configs already reported as too small
    return IPv4Addr(max(first, 0)), IPv4Addr(max(last, 0))


def node_names(kind_name: str, workers: int) -> tuple[str, ...]:
    names = [f"{kind_name}-control-plane"]
    for i in range(1, workers + 1):
        names.append(f"{kind_name}-worker" if i == 1 else f"{kind_name}-worker{i}")
    return tuple(names)


def pod_prefix_needed(nodes: int) -> int:
    """Longest pod CIDR prefix that still gives each of ``nodes`` nodes its own /24."""
    return NODE_POD_PREFIX - max(nodes - 1, 0).bit_length()
