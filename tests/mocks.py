"""Run the kindmesh program under Pulumi mocks and record every RegisterResource request.

``evaluate(raw, stack)`` plans ``raw`` (the ``kindmesh:`` keys), builds the stack graph
with ``preview=False`` (so ``apply`` callbacks really run), waits for every output, and
returns a :class:`Recording` of what was registered: type, name, parent, provider,
dependencies, ``deletedWith``, secret inputs and the inputs themselves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import rpc
from pulumi.runtime.settings import ROOT
from pulumi.runtime.sync_await import _sync_await

from kindmesh.core.planner import StackPlan, load_plan
from kindmesh.stacks.composition import Stack, build, export

SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"
DYNAMIC = "pulumi-python:dynamic:Resource"
FAKE_KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n# fake for {name}\n"


@dataclass
class Registered:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    provider: str
    dependencies: list[str]
    deleted_with: str
    secret_inputs: set[str]
    secret_paths: set[str]  # dotted paths of the secret values inside the inputs, e.g. "environment.X"
    additional_secret_outputs: list[str]
    delete_before_replace: bool
    inputs: dict[str, Any]
    replace_on_changes: list[str] = field(default_factory=list)


def _plain(value: Any) -> Any:
    """Unwrap secret envelopes and turn protobuf's whole floats back into ints."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return _plain(value.get("value"))
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def secret_paths(value: Any, path: str = "") -> set[str]:
    """Dotted paths of every secret envelope in a serialized (``MessageToDict``) value."""
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return {path}
        return {p for k, v in value.items() for p in secret_paths(v, f"{path}.{k}" if path else str(k))}
    if isinstance(value, list):
        return {p for i, v in enumerate(value) for p in secret_paths(v, f"{path}[{i}]")}
    return set()


_secret_paths = secret_paths


def _has_secret(value: Any) -> bool:
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return True
        return any(_has_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secret(v) for v in value)
    return False


class Mocks(pmocks.Mocks):
    def new_resource(self, args: pmocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == DYNAMIC and args.name.endswith("-kind"):
            name = args.inputs["name"]
            state.update(
                kubeconfig=FAKE_KUBECONFIG.format(name=name),
                context=f"kind-{name}",
                control_plane=f"{name}-control-plane",
                nodes=[f"{name}-control-plane"] + [f"{name}-worker"] * int(args.inputs.get("workers", 0)),
            )
        elif args.typ == "kubernetes:helm.sh/v3:Release":
            state["status"] = {"revision": 1, "status": "deployed", "name": args.inputs.get("name")}
        elif args.typ == "tls:index/privateKey:PrivateKey":
            digest = hashlib.sha256(args.name.encode()).hexdigest()
            state["private_key_pem"] = f"-----BEGIN RSA PRIVATE KEY-----\n{digest}\n-----END RSA PRIVATE KEY-----\n"
        elif args.typ == "tls:index/selfSignedCert:SelfSignedCert":
            digest = hashlib.sha256(args.name.encode()).hexdigest()
            state["cert_pem"] = f"-----BEGIN CERTIFICATE-----\n{digest}\n-----END CERTIFICATE-----\n"
        return f"{args.name}-id", state

    def call(self, args: pmocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class Recorder(pmocks.MockMonitor):
    def __init__(self, mocks: pmocks.Mocks):
        super().__init__(mocks)
        self.registered: list[Registered] = []
        self.stack_outputs: dict[str, Any] = {}
        self.secret_outputs: set[str] = set()

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            raw = json_format.MessageToDict(request.object)
            inputs = rpc.deserialize_properties(request.object)
            self.registered.append(
                Registered(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    custom=bool(request.custom),
                    parent=request.parent,
                    provider=request.provider,
                    dependencies=list(request.dependencies),
                    deleted_with=request.deletedWith,
                    secret_inputs={k for k, v in raw.items() if _has_secret(v)},
                    secret_paths=secret_paths(raw),
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    replace_on_changes=list(request.replaceOnChanges),
                    inputs=_plain(inputs),
                )
            )
        return response


@dataclass
class Recording:
    plan: StackPlan
    stack: Stack
    resources: list[Registered] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    stack_outputs: dict[str, Any] = field(default_factory=dict)
    secret_stack_outputs: set[str] = field(default_factory=set)

    def of_type(self, type_: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> Registered:
        hits = [r for r in self.resources if r.name == name]
        assert len(hits) == 1, f"{len(hits)} resources named {name!r}"
        return hits[0]

    def by_urn(self, urn: str) -> Registered:
        return next(r for r in self.resources if r.urn == urn)

    def ancestors(self, r: Registered) -> list[Registered]:
        out = []
        while r.parent:
            try:
                r = self.by_urn(r.parent)
            except StopIteration:
                break
            out.append(r)
        return out

    def depends_on(self, a: Registered, b: Registered) -> bool:
        """True when ``a`` (transitively) depends on ``b`` via dependencies or parents' deps."""
        seen: set[str] = set()
        todo = [a.urn]
        while todo:
            urn = todo.pop()
            if urn in seen:
                continue
            seen.add(urn)
            node = self.by_urn(urn)
            if b.urn in node.dependencies:
                return True
            todo.extend(node.dependencies)
            # a component's children: a dependency on a component means on its children
            todo.extend(r.urn for r in self.resources if r.parent == urn)
        return False


def _resolve(value: Any) -> tuple[Any, bool]:
    """A stack output's value and secretness, awaiting only the Outputs it really holds."""
    if isinstance(value, pulumi.Output):
        inner, inner_secret = _resolve(_sync_await(value.future()))
        return inner, inner_secret or bool(_sync_await(value.is_secret()))
    if isinstance(value, dict):
        pairs = {k: _resolve(v) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(s for _, s in pairs.values())
    if isinstance(value, (list, tuple)):
        items = [_resolve(v) for v in value]
        return [v for v, _ in items], any(s for _, s in items)
    return value, False


def evaluate(raw: dict[str, Any], stack: str = "dev", project: str = "kindmesh") -> Recording:
    ROOT.set(None)
    mocks = Mocks()
    monitor = Recorder(mocks)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    plan = load_plan(raw, stack=stack, project=project)
    holder: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> Any:
        built = build(plan)
        export(built)
        holder["stack"] = built
        # Only real Outputs are gathered; plan-time data stays plain (no deep wrapping).
        holder["outputs"] = {"peers": built.mesh.peers}
        outs = pulumi.Output.all(
            ca_key=built.ca.key_b64, **{f"kubeconfig:{n}": p.kind.kubeconfig for n, p in built.clusters.items()}
        )

        def keep(v: dict[str, Any]) -> None:
            holder["outputs"]["ca_key"] = v["ca_key"]
            holder["outputs"]["kubeconfigs"] = {
                k.split(":", 1)[1]: text for k, text in v.items() if k.startswith("kubeconfig:")
            }

        return outs.apply(keep)

    program()
    root = ROOT.get()
    exported = dict(getattr(root, "outputs", {}) or {})
    values: dict[str, Any] = {}
    secret: set[str] = set()
    for key, value in exported.items():
        values[key], is_secret = _resolve(value)
        if is_secret:
            secret.add(key)
    monitor.stack_outputs = values
    monitor.secret_outputs = secret
    return Recording(plan=plan, stack=holder["stack"], resources=monitor.registered,
                     outputs=holder.get("outputs", {}), stack_outputs=monitor.stack_outputs,
                     secret_stack_outputs=monitor.secret_outputs)


def run_file(path: Any, stack: str = "dev", project: str = "kindmesh") -> Recorder:
    """Run a Pulumi program file (``__main__.py``) under the mocks; the recorder it used."""
    import runpy

    ROOT.set(None)
    mocks = Mocks()
    recorder = Recorder(mocks)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=recorder)

    @pulumi.runtime.test
    def program() -> None:
        runpy.run_path(str(path), run_name="__main__")

    program()
    return recorder
