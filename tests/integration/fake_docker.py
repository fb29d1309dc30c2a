"""A fake Docker Engine (API over a Unix socket) and a fake ``docker`` CLI for the engine tier.

The only fakes of the real-engine tier besides ``kind`` (tests/integration/fake_kind.py): the
docker provider plugin (pulumi-docker, a real Go binary) and kindmesh's own ``docker`` CLI
calls talk to this, and it answers as Docker Engine 28/29 does according to moby's source:

* ``GET /_ping`` carries ``Api-Version``; requests below the minimum API version (1.44 on
  29.x) are refused as the daemon refuses them (``client version … is too old``).
* ``POST /networks/create``: a name in use is 409; a subnet overlapping another network's is
  403 ``Pool overlaps with other one on this address space``; predefined names are refused.
* A network's inspect ``Options`` are the options it was created with, plus the
  ``com.docker.network.enable_ipv4`` / ``enable_ipv6`` driver options the daemon fills in
  for a bridge network when the create request did not carry them (the behaviour the
  pulumi-docker provider copies back into its state: see the developers' guide).
* ``DELETE /networks/{id}`` with containers attached is 403 ``has active endpoints``.

Containers (kind's node containers, made by the fake kind) hold a tiny file store for the
``docker exec … cat``/``cat >`` calls kindmesh makes. Every request is logged as a JSON line
(``requests.log`` in the state directory) for the tier's assertions.

Run ``python -m tests.integration.fake_docker daemon --state DIR`` for the daemon, and the CLI
as ``docker`` through a wrapper on PATH (``python -m tests.integration.fake_docker cli ...``).
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import io
import ipaddress
import json
import os
import re
import secrets
import socket
import socketserver
import sys
import tarfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

ENGINE_VERSION = "29.1.3"
API_VERSION = "1.52"
MIN_API_VERSION = "1.44"
CONTAINERD_DRIVER = "io.containerd.snapshotter.v1"
PREDEFINED = ("bridge", "host", "none")
ENABLE_IPV4 = "com.docker.network.enable_ipv4"
ENABLE_IPV6 = "com.docker.network.enable_ipv6"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000000Z"


def _ver(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Engine:
    """The daemon's state: networks, containers, images. One lock; persisted on change."""

    def __init__(self, state: Path, *, store: str = "containerd", mtu: int = 1500):
        self.state = state
        self.lock = threading.RLock()
        self.store = store
        self.networks: dict[str, dict[str, Any]] = {}
        self.containers: dict[str, dict[str, Any]] = {}
        self.images: dict[str, dict[str, Any]] = {}
        self.files: dict[str, dict[str, str]] = {}
        self._add_network("bridge", "172.17.0.0/16", {
            "com.docker.network.bridge.default_bridge": "true",
            "com.docker.network.bridge.enable_icc": "true",
            "com.docker.network.bridge.enable_ip_masquerade": "true",
            "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
            "com.docker.network.bridge.name": "docker0",
            "com.docker.network.driver.mtu": str(mtu),
        }, {}, predefined=True)
        self._add_network("host", None, {}, {}, predefined=True, driver="host")
        self._add_network("none", None, {}, {}, predefined=True, driver="null")
        self.load()

    # ------------------------------------------------------------------ persistence
    def load(self) -> None:
        """What a previous daemon on this state directory left (as dockerd keeps its networks,
        containers and images across a restart)."""
        path = self.state / "engine.json"
        if not path.exists():
            return
        data = json.loads(path.read_text())
        self.networks = data.get("networks") or self.networks
        self.containers = data.get("containers") or {}
        self.images = data.get("images") or {}
        self.files = data.get("files") or {}

    def save(self) -> None:
        data = {"networks": self.networks, "containers": self.containers, "images": self.images, "files": self.files}
        tmp = self.state / "engine.json.tmp"
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.state / "engine.json")

    # ------------------------------------------------------------------ networks
    def _add_network(self, name: str, subnet: str | None, options: dict[str, str], labels: dict[str, str],
                     *, predefined: bool = False, driver: str = "bridge", gateway: str | None = None,
                     ip_range: str | None = None, aux: dict[str, str] | None = None) -> dict[str, Any]:
        nid = secrets.token_hex(32)
        config = []
        if subnet:
            net = ipaddress.ip_network(subnet)
            # moby keeps what was asked (api/types/network IPAMConfig: IPRange and AuxiliaryAddresses
            # omitted when empty) and reports it on inspect; containers get addresses from IPRange.
            entry: dict[str, Any] = {"Subnet": str(net)}
            if ip_range:
                entry["IPRange"] = ip_range
            entry["Gateway"] = gateway or str(net.network_address + 1)
            if aux:
                entry["AuxiliaryAddresses"] = dict(aux)
            config.append(entry)
        net_obj = {
            "Name": name, "Id": nid, "Created": _now(), "Scope": "local", "Driver": driver,
            "EnableIPv4": driver == "bridge", "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None if predefined else {}, "Config": config},
            "Internal": False, "Attachable": False, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            "Options": options, "Labels": labels,
        }
        self.networks[nid] = net_obj
        return net_obj

    def find_network(self, ref: str) -> dict[str, Any]:
        with self.lock:
            if ref in self.networks:
                return self.networks[ref]
            for net in self.networks.values():
                if net["Name"] == ref:
                    return net
            hits = [n for i, n in self.networks.items() if i.startswith(ref)] if len(ref) >= 1 else []
            if len(hits) == 1:
                return hits[0]
        raise ApiError(404, f"network {ref} not found")

    def network_view(self, net: dict[str, Any]) -> dict[str, Any]:
        view = json.loads(json.dumps(net))
        view["Containers"] = {
            cid: {"Name": c["Name"].lstrip("/"), "EndpointID": c["Endpoints"][net["Id"]]["EndpointID"],
                  "MacAddress": c["Endpoints"][net["Id"]]["MacAddress"],
                  "IPv4Address": c["Endpoints"][net["Id"]]["IPAddress"] + "/" + str(
                      ipaddress.ip_network(net["IPAM"]["Config"][0]["Subnet"]).prefixlen) if net["IPAM"]["Config"] else "",
                  "IPv6Address": ""}
            for cid, c in self.containers.items() if net["Id"] in c["Endpoints"]
        }
        return view

    def create_network(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("Name") or ""
        with self.lock:
            if name in PREDEFINED:
                raise ApiError(403, f"{name} is a pre-defined network and cannot be created")
            if any(n["Name"] == name for n in self.networks.values()):
                raise ApiError(409, f"network with name {name} already exists")
            driver = body.get("Driver") or "bridge"
            options = dict(body.get("Options") or {})
            if driver == "bridge":
                # moby daemon/network.go createNetwork: IPv4 on unless asked otherwise; the
                # bridge network's driver options carry both flags as the daemon reports them.
                v4 = body.get("EnableIPv4")
                v6 = body.get("EnableIPv6")
                options.setdefault(ENABLE_IPV4, "true" if v4 is None else str(bool(v4)).lower())
                options.setdefault(ENABLE_IPV6, "true" if v6 else "false")
            configs = ((body.get("IPAM") or {}).get("Config")) or []
            subnet = gateway = ip_range = None
            aux: dict[str, str] = {}
            for cfg in configs:
                try:
                    net = ipaddress.ip_network(cfg.get("Subnet") or "", strict=True)
                except ValueError as exc:
                    raise ApiError(400, f"invalid subnet {cfg.get('Subnet')!r}: {exc}") from None
                if net.version != 4:
                    continue
                for other in self.networks.values():
                    for oc in other["IPAM"]["Config"]:
                        if ipaddress.ip_network(oc["Subnet"]).overlaps(net):
                            raise ApiError(403, "invalid pool request: Pool overlaps with other one on this address space")
                subnet, gateway = str(net), cfg.get("Gateway") or None
                ip_range, aux = cfg.get("IPRange") or None, dict(cfg.get("AuxiliaryAddresses") or cfg.get("AuxAddress") or {})
                if ip_range:
                    try:
                        rng = ipaddress.ip_network(ip_range, strict=True)
                    except ValueError as exc:
                        raise ApiError(400, f"invalid ip-range {ip_range!r}: {exc}") from None
                    if not rng.subnet_of(net):  # type: ignore[arg-type]
                        raise ApiError(403, f"invalid pool request: ip-range {ip_range} is not contained in subnet {net}")
                for what, addr in [("gateway", gateway), *((f"auxiliary address {k}", v) for k, v in aux.items())]:
                    if addr and ipaddress.ip_address(addr) not in net:
                        raise ApiError(403, f"invalid pool request: {what} {addr} is not in subnet {net}")
            if subnet is None:
                subnet = self._free_subnet()
            net_obj = self._add_network(name, subnet, options, dict(body.get("Labels") or {}),
                                        driver=driver, gateway=gateway, ip_range=ip_range, aux=aux)
            net_obj["Internal"] = bool(body.get("Internal"))
            net_obj["Attachable"] = bool(body.get("Attachable"))
            self.save()
            return {"Id": net_obj["Id"], "Warning": ""}

    def _free_subnet(self) -> str:
        used = [ipaddress.ip_network(c["Subnet"]) for n in self.networks.values() for c in n["IPAM"]["Config"]]
        for second in range(18, 32):
            cand = ipaddress.ip_network(f"172.{second}.0.0/16")
            if not any(cand.overlaps(u) for u in used):
                return str(cand)
        raise ApiError(403, "could not find an available, non-overlapping IPv4 address pool")

    def delete_network(self, ref: str) -> None:
        with self.lock:
            net = self.find_network(ref)
            if net["Name"] in PREDEFINED:
                raise ApiError(403, f"{net['Name']} is a pre-defined network and cannot be removed")
            attached = [c["Name"].lstrip("/") for c in self.containers.values() if net["Id"] in c["Endpoints"]]
            if attached:
                raise ApiError(403, f"error while removing network: network {net['Name']} id {net['Id']} has active endpoints")
            del self.networks[net["Id"]]
            self.save()

    # ------------------------------------------------------------------ containers
    def find_container(self, ref: str) -> dict[str, Any]:
        with self.lock:
            if ref in self.containers:
                return self.containers[ref]
            for c in self.containers.values():
                if c["Name"] == "/" + ref.lstrip("/"):
                    return c
            hits = [c for i, c in self.containers.items() if i.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
        raise ApiError(404, f"No such container: {ref}")

    def create_container(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if any(c["Name"] == "/" + name for c in self.containers.values()):
                raise ApiError(409, f'Conflict. The container name "/{name}" is already in use')
            cid = secrets.token_hex(32)
            endpoints = {}
            for net_name in ((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}):
                net = self.find_network(net_name)
                endpoints[net["Id"]] = self._endpoint(net)
            self.containers[cid] = {
                "Id": cid, "Name": "/" + name, "Created": _now(), "Image": body.get("Image", ""),
                "Labels": dict(body.get("Labels") or {}), "Endpoints": endpoints,
            }
            self.files[cid] = {}
            self.save()
            return {"Id": cid, "Warnings": []}

    def _endpoint(self, net: dict[str, Any]) -> dict[str, Any]:
        taken = {c["Endpoints"][net["Id"]]["IPAddress"] for c in self.containers.values() if net["Id"] in c["Endpoints"]}
        cfg = net["IPAM"]["Config"][0]
        sub = ipaddress.ip_network(cfg["Subnet"])
        gw = cfg["Gateway"]
        reserved = {gw, *(cfg.get("AuxiliaryAddresses") or {}).values()}
        pool = ipaddress.ip_network(cfg["IPRange"]) if cfg.get("IPRange") else sub
        for host in pool:  # moby's allocator skips only the subnet's own network and broadcast addresses
            if host in (sub.network_address, sub.broadcast_address):
                continue
            if str(host) not in reserved and str(host) not in taken:
                mac = "02:42:" + ":".join(f"{b:02x}" for b in host.packed)
                return {"IPAddress": str(host), "Gateway": gw, "MacAddress": mac, "EndpointID": secrets.token_hex(32),
                        "NetworkID": net["Id"], "IPPrefixLen": sub.prefixlen}
        raise ApiError(403, f"no available IPv4 addresses on network {net['Name']}")

    def container_view(self, c: dict[str, Any]) -> dict[str, Any]:
        nets = {}
        for nid, ep in c["Endpoints"].items():
            net = self.networks.get(nid)
            if net:
                nets[net["Name"]] = dict(ep)
        return {
            "Id": c["Id"], "Name": c["Name"], "Created": c["Created"], "Image": c["Image"],
            "State": {"Status": "running", "Running": True, "Pid": 1},
            "Config": {"Labels": c["Labels"], "Image": c["Image"], "Hostname": c["Name"].lstrip("/")},
            "NetworkSettings": {"Networks": nets},
        }

    def list_containers(self, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
        out = []
        with self.lock:
            for c in self.containers.values():
                ok = True
                for want in filters.get("label", []):
                    key, _, value = want.partition("=")
                    if key not in c["Labels"] or (value and c["Labels"][key] != value):
                        ok = False
                for want in filters.get("name", []):
                    if want not in c["Name"]:
                        ok = False
                if ok:
                    out.append({"Id": c["Id"], "Names": [c["Name"]], "Image": c["Image"], "Labels": c["Labels"],
                                "State": "running", "Status": "Up"})
        return out

    def delete_container(self, ref: str) -> None:
        with self.lock:
            c = self.find_container(ref)
            del self.containers[c["Id"]]
            self.files.pop(c["Id"], None)
            self.save()

    # ------------------------------------------------------------------ images
    def pull(self, ref: str, platform: str) -> dict[str, Any]:
        """``repo:tag`` stores a tagged image; ``repo[:tag]@sha256:…`` one known by digest
        only (``repo@sha256:…``), as docker does: a digest reference wins over the tag."""
        with self.lock:
            name, _, digest = ref.partition("@")
            slash, colon = name.rfind("/"), name.rfind(":")
            repo = name[:colon] if colon > slash else name
            if digest:
                img = {"Id": digest, "RepoTags": [], "RepoDigests": [f"{repo}@{digest}"], "Platform": platform}
                self.images[f"{repo}@{digest}"] = img
            else:
                img = {"Id": "sha256:" + secrets.token_hex(32), "RepoTags": [name], "RepoDigests": [],
                       "Platform": platform}
                self.images[name] = img
            self.save()
            return img

    def find_image(self, ref: str) -> dict[str, Any]:
        with self.lock:
            if ref in self.images:
                return self.images[ref]
            for img in self.images.values():
                if ref in img["RepoTags"] or ref in img["RepoDigests"]:
                    return img
        raise ApiError(404, f"No such image: {ref}")

    def tag(self, ref: str, repo: str, tag: str) -> None:
        with self.lock:
            img = self.find_image(ref)
            new = f"{repo}:{tag}" if tag else repo
            if new not in img["RepoTags"]:
                img["RepoTags"].append(new)
            self.images[new] = img
            self.save()


ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"/_ping"), "ping"),
    ("HEAD", re.compile(r"/_ping"), "ping"),
    ("GET", re.compile(r"/version"), "version"),
    ("GET", re.compile(r"/info"), "info"),
    ("GET", re.compile(r"/networks"), "networks"),
    ("POST", re.compile(r"/networks/create"), "network_create"),
    ("GET", re.compile(r"/networks/(?P<ref>[^/]+)"), "network_inspect"),
    ("DELETE", re.compile(r"/networks/(?P<ref>[^/]+)"), "network_delete"),
    ("POST", re.compile(r"/containers/create"), "container_create"),
    ("GET", re.compile(r"/containers/json"), "containers"),
    ("GET", re.compile(r"/containers/(?P<ref>[^/]+)/json"), "container_inspect"),
    ("DELETE", re.compile(r"/containers/(?P<ref>[^/]+)"), "container_delete"),
    ("GET", re.compile(r"/kindmesh-fake/containers/(?P<ref>[^/]+)/file"), "file_get"),
    ("PUT", re.compile(r"/kindmesh-fake/containers/(?P<ref>[^/]+)/file"), "file_put"),
    ("POST", re.compile(r"/images/create"), "image_pull"),
    ("GET", re.compile(r"/images/get"), "image_save"),
    ("GET", re.compile(r"/images/(?P<ref>.+)/json"), "image_inspect"),
    ("POST", re.compile(r"/images/(?P<ref>.+)/tag"), "image_tag"),
]


class Handler(http.server.BaseHTTPRequestHandler):
    engine: Engine
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def address_string(self) -> str:
        return "unix"

    def _reply(self, status: int, body: Any = None, *, raw: bytes | None = None, ctype: str = "application/json") -> None:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")
        self.send_header("Server", f"Docker/{ENGINE_VERSION} (linux)")
        if data or status != 204:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _dispatch(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        m = re.match(r"^/v(\d+\.\d+)(/.*)$", path)
        version = API_VERSION
        if m:
            version, path = m.group(1), m.group(2)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        query = urllib.parse.parse_qs(url.query)
        entry = {"t": time.time(), "method": self.command, "path": path, "version": version,
                 "query": {k: v[0] for k, v in query.items()}}
        try:
            if m and _ver(version) < _ver(MIN_API_VERSION):
                raise ApiError(400, f"client version {version} is too old. Minimum supported API version is "
                                    f"{MIN_API_VERSION}, please upgrade your client to a newer version")
            if m and _ver(version) > _ver(API_VERSION):
                raise ApiError(400, f"client version {version} is too new. Maximum supported API version is {API_VERSION}")
            for method, pattern, name in ROUTES:
                mm = pattern.fullmatch(path)
                if method == self.command and mm:
                    body = json.loads(raw) if raw and self.headers.get("Content-Type", "").startswith("application/json") else raw
                    entry["route"] = name
                    if isinstance(body, dict):
                        entry["body"] = body
                    getattr(self, "do_" + name)(query, body, **mm.groupdict())
                    break
            else:
                raise ApiError(404, f"page not found: {self.command} {path}")
            entry["status"] = "ok"
        except ApiError as err:
            entry["status"] = err.status
            self._reply(err.status, {"message": err.message})
        with self.engine.lock, open(self.engine.state / "requests.log", "a") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")

    do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = _dispatch  # noqa: N815

    # ------------------------------------------------------------------ routes
    def do_ping(self, q: Any, body: Any) -> None:
        self._reply(200, raw=b"OK", ctype="text/plain; charset=utf-8")

    def do_version(self, q: Any, body: Any) -> None:
        self._reply(200, {
            "Platform": {"Name": "Docker Engine - Community"}, "Version": ENGINE_VERSION, "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION, "GitCommit": "fake", "GoVersion": "go1.25.5", "Os": "linux",
            "Arch": "amd64", "KernelVersion": os.uname().release, "BuildTime": _now(),
            "Components": [{"Name": "Engine", "Version": ENGINE_VERSION,
                            "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION}}],
        })

    def do_info(self, q: Any, body: Any) -> None:
        e = self.engine
        driver_status = [["driver-type", CONTAINERD_DRIVER]] if e.store == "containerd" else [["Backing Filesystem", "extfs"]]
        self._reply(200, {
            "ID": "fake-engine", "Containers": len(e.containers), "Images": len(e.images),
            "Driver": "overlayfs" if e.store == "containerd" else "overlay2", "DriverStatus": driver_status,
            "ServerVersion": ENGINE_VERSION, "OperatingSystem": "Debian GNU/Linux 12 (bookworm)", "OSType": "linux",
            "Architecture": "x86_64", "KernelVersion": os.uname().release, "NCPU": os.cpu_count() or 1,
            "MemTotal": 24 * 1024**3, "DockerRootDir": str(e.state / "root"), "CgroupDriver": "systemd",
            "CgroupVersion": "2", "SecurityOptions": ["name=seccomp,profile=builtin", "name=cgroupns"],
            "Name": "fakehost", "Warnings": None,
        })

    def do_networks(self, q: Any, body: Any) -> None:
        filters = json.loads(q.get("filters", ["{}"])[0] or "{}")
        names = set(filters.get("name") or {})
        with self.engine.lock:
            nets = [self.engine.network_view(n) for n in self.engine.networks.values()
                    if not names or any(x in n["Name"] for x in names)]
        self._reply(200, nets)

    def do_network_create(self, q: Any, body: Any) -> None:
        self._reply(201, self.engine.create_network(body if isinstance(body, dict) else {}))

    def do_network_inspect(self, q: Any, body: Any, ref: str) -> None:
        with self.engine.lock:
            self._reply(200, self.engine.network_view(self.engine.find_network(ref)))

    def do_network_delete(self, q: Any, body: Any, ref: str) -> None:
        self.engine.delete_network(ref)
        self._reply(204)

    def do_container_create(self, q: Any, body: Any) -> None:
        name = (q.get("name") or [""])[0]
        self._reply(201, self.engine.create_container(name, body if isinstance(body, dict) else {}))

    def do_containers(self, q: Any, body: Any) -> None:
        filters = json.loads(q.get("filters", ["{}"])[0] or "{}")
        norm = {k: list(v) if isinstance(v, (list, dict)) else [v] for k, v in filters.items()}
        self._reply(200, self.engine.list_containers(norm))

    def do_container_inspect(self, q: Any, body: Any, ref: str) -> None:
        with self.engine.lock:
            self._reply(200, self.engine.container_view(self.engine.find_container(ref)))

    def do_container_delete(self, q: Any, body: Any, ref: str) -> None:
        self.engine.delete_container(ref)
        self._reply(204)

    def do_file_get(self, q: Any, body: Any, ref: str) -> None:
        c = self.engine.find_container(ref)
        path = q.get("path", [""])[0]
        files = self.engine.files.get(c["Id"], {})
        if path not in files:
            raise ApiError(404, f"cat: {path}: No such file or directory")
        self._reply(200, raw=files[path].encode(), ctype="application/octet-stream")

    def do_file_put(self, q: Any, body: Any, ref: str) -> None:
        c = self.engine.find_container(ref)
        path = q.get("path", [""])[0]
        with self.engine.lock:
            self.engine.files.setdefault(c["Id"], {})[path] = body.decode() if isinstance(body, bytes) else json.dumps(body)
            self.engine.save()
        self._reply(204)

    def do_image_pull(self, q: Any, body: Any) -> None:
        ref = q.get("fromImage", [""])[0]
        tag = q.get("tag", [""])[0]
        if tag:
            ref = f"{ref}@{tag}" if tag.startswith("sha256:") else f"{ref}:{tag}"
        img = self.engine.pull(ref, q.get("platform", ["linux/amd64"])[0])
        lines = [{"status": f"Pulling from {ref}"}, {"status": f"Digest: {img['Id']}"},
                 {"status": f"Status: Downloaded newer image for {ref}"}]
        self._reply(200, raw=b"".join(json.dumps(x).encode() + b"\r\n" for x in lines))

    def do_image_inspect(self, q: Any, body: Any, ref: str) -> None:
        self._reply(200, self.engine.find_image(urllib.parse.unquote(ref)))

    def do_image_tag(self, q: Any, body: Any, ref: str) -> None:
        self.engine.tag(urllib.parse.unquote(ref), q.get("repo", [""])[0], q.get("tag", [""])[0])
        self._reply(201)

    def do_image_save(self, q: Any, body: Any) -> None:
        names = q.get("names", [])
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            manifest = []
            for ref in names:
                img = self.engine.find_image(ref)
                manifest.append({"Config": img["Id"], "RepoTags": img["RepoTags"], "Layers": []})
            data = json.dumps(manifest).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        self._reply(200, raw=buf.getvalue(), ctype="application/x-tar")


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve(state: Path, socket_path: Path, *, store: str = "containerd", mtu: int = 1500) -> None:
    state.mkdir(parents=True, exist_ok=True)
    engine = Engine(state, store=store, mtu=mtu)
    engine.save()
    handler = type("BoundHandler", (Handler,), {"engine": engine})
    if socket_path.exists():
        socket_path.unlink()
    with UnixHTTPServer(str(socket_path), handler) as server:
        os.chmod(socket_path, 0o660)
        (state / "daemon.ready").write_text(str(os.getpid()))
        server.serve_forever()


# ====================================================================== client + CLI


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=60)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(60)
        sock.connect(self.unix_path)
        self.sock = sock


def socket_path() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    if not host.startswith("unix://"):
        raise SystemExit("Cannot connect to the Docker daemon: DOCKER_HOST must be unix:///… for the fake docker")
    return host[len("unix://"):]


def api(method: str, path: str, body: Any = None, *, raw: bytes | None = None) -> tuple[int, bytes]:
    conn = UnixConnection(socket_path())
    headers = {}
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, f"/v{API_VERSION}{path}", body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError as exc:
        raise SystemExit(f"Cannot connect to the Docker daemon at unix://{socket_path()}. Is the docker daemon running? ({exc})") from None
    finally:
        conn.close()


def api_json(method: str, path: str, body: Any = None) -> Any:
    status, data = api(method, path, body)
    if status >= 400:
        try:
            message = json.loads(data)["message"]
        except (ValueError, KeyError, TypeError):
            message = data.decode(errors="replace")
        raise ApiError(status, message)
    return json.loads(data) if data else None


# ---------------------------------------------------------------------- Go templates (a subset)


def _field(obj: Any, path: str) -> Any:
    if path in (".", ""):
        return obj
    for part in path.strip(".").split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _str(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_str(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_str(v) for v in value) + "]"
    return str(value)


def render(template: str, obj: Any) -> str:
    """Go text/template, as far as kindmesh and kind use it: ``.A.B``, ``json X``, ``index X "k"``."""
    def action(m: re.Match[str]) -> str:
        expr = m.group(1).strip()
        if expr.startswith("json "):
            return json.dumps(_field(obj, expr[5:].strip()), separators=(",", ":"))
        im = re.fullmatch(r'index\s+(\S+)\s+"([^"]*)"', expr)
        if im:
            container = _field(obj, im.group(1))
            value = container.get(im.group(2)) if isinstance(container, dict) else None
            return "" if value is None else _str(value)
        if re.fullmatch(r"\.[\w.]*", expr):
            return _str(_field(obj, expr))
        raise SystemExit(f"template parsing error: the fake docker does not support {{{{{expr}}}}}")
    return re.sub(r"\{\{-?\s*(.*?)\s*-?\}\}", action, template)


def _pop_opt(args: list[str], *names: str) -> str | None:
    for name in names:
        for i, a in enumerate(args):
            if a == name and i + 1 < len(args):
                value = args[i + 1]
                del args[i:i + 2]
                return value
            if a.startswith(name + "="):
                del args[i]
                return a.split("=", 1)[1]
    return None


def _print_items(items: list[Any], fmt: str | None) -> None:
    if fmt is None:
        print(json.dumps(items, indent=4))
    else:
        for item in items:
            print(render(fmt, item))


def cli(argv: list[str]) -> int:
    args = list(argv)
    while args and args[0].startswith("--"):  # global flags (--host, --context …) are not used
        args.pop(0)
    if not args:
        print("Usage:  docker [OPTIONS] COMMAND", file=sys.stderr)
        return 1
    cmd, rest = args[0], args[1:]
    try:
        return _cli(cmd, rest)
    except ApiError as err:
        print(f"Error response from daemon: {err.message}", file=sys.stderr)
        return 1


def _cli(cmd: str, rest: list[str]) -> int:
    fmt = _pop_opt(rest, "--format", "-f")
    if cmd == "version":
        v = api_json("GET", "/version")
        obj = {"Client": {"Version": ENGINE_VERSION, "ApiVersion": API_VERSION, "Os": "linux", "Arch": "amd64"},
               "Server": v}
        print(render(fmt, obj) if fmt else f"Server: Docker Engine - Community\n Engine:\n  Version: {v['Version']}")
        return 0
    if cmd == "info":
        info = api_json("GET", "/info")
        print(render(fmt, info) if fmt else json.dumps(info, indent=1))
        return 0
    if cmd == "network":
        sub, rest = rest[0], rest[1:]
        if sub in ("ls", "list"):
            nets = api_json("GET", "/networks")
            _print_items(nets, fmt or "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}")
            return 0
        if sub == "inspect":
            out, rc = [], 0
            for ref in rest:
                try:
                    out.append(api_json("GET", f"/networks/{urllib.parse.quote(ref, safe='')}"))
                except ApiError as err:
                    print(f"Error response from daemon: {err.message}", file=sys.stderr)
                    rc = 1
            _print_items(out, fmt)
            return rc
        if sub == "rm":
            for ref in rest:
                api_json("DELETE", f"/networks/{urllib.parse.quote(ref, safe='')}")
                print(ref)
            return 0
        if sub == "create":
            body: dict[str, Any] = {"Options": {}, "Labels": {}}
            subnet = _pop_opt(rest, "--subnet")
            while (opt := _pop_opt(rest, "-o", "--opt")) is not None:
                k, _, v = opt.partition("=")
                body["Options"][k] = v
            while (lab := _pop_opt(rest, "--label")) is not None:
                k, _, v = lab.partition("=")
                body["Labels"][k] = v
            body["Driver"] = _pop_opt(rest, "-d", "--driver") or "bridge"
            if subnet:
                body["IPAM"] = {"Config": [{"Subnet": subnet}]}
            body["Name"] = rest[-1]
            print(api_json("POST", "/networks/create", body)["Id"])
            return 0
    if cmd in ("inspect", "container"):
        if cmd == "container":
            rest = rest[1:]
        out = []
        for ref in rest:
            out.append(api_json("GET", f"/containers/{urllib.parse.quote(ref, safe='')}/json"))
        _print_items(out, fmt)
        return 0
    if cmd == "ps":
        filters: dict[str, list[str]] = {}
        rest_copy = list(rest)
        while (flt := _pop_opt(rest_copy, "--filter")) is not None:
            k, _, v = flt.partition("=")
            filters.setdefault(k, []).append(v)
        items = api_json("GET", "/containers/json?all=1&filters=" + urllib.parse.quote(json.dumps(filters)))
        for c in items:
            c["Names"] = ",".join(n.lstrip("/") for n in c["Names"])
        _print_items(items, fmt or "{{.Names}}")
        return 0
    if cmd == "exec":
        rest = [a for a in rest if a not in ("-i", "--interactive", "-t")]
        ref, command = rest[0], rest[1:]
        cid = api_json("GET", f"/containers/{urllib.parse.quote(ref, safe='')}/json")["Id"]
        if command[:1] == ["cat"] and len(command) == 2:
            status, data = api("GET", f"/kindmesh-fake/containers/{cid}/file?path={urllib.parse.quote(command[1])}")
            if status != 200:
                print(f"cat: {command[1]}: No such file or directory", file=sys.stderr)
                return 1
            sys.stdout.write(data.decode())
            return 0
        m = re.fullmatch(r"cat > (\S+)", command[2]) if command[:2] == ["sh", "-c"] and len(command) == 3 else None
        if m:
            api("PUT", f"/kindmesh-fake/containers/{cid}/file?path={urllib.parse.quote(m.group(1))}",
                raw=sys.stdin.buffer.read())
            return 0
        if command[:1] in (["true"], ["echo"]):
            print(" ".join(command[1:]))
            return 0
        print(f"fake docker: exec {command!r} is not simulated", file=sys.stderr)
        return 126
    if cmd == "pull":
        from tests.integration import durations
        started = time.monotonic()
        platform = _pop_opt(rest, "--platform") or "linux/amd64"
        ref = rest[-1]
        name, _, digest = ref.partition("@")
        q = {"fromImage": name, "platform": platform}
        if digest:
            q["tag"] = digest
        api_json_stream = api("POST", "/images/create?" + urllib.parse.urlencode(q))
        if api_json_stream[0] >= 400:
            raise ApiError(api_json_stream[0], json.loads(api_json_stream[1])["message"])
        durations.take("image pull", started)  # a timed world: as long as the model says a pull takes
        print(f"{ref}: Pulled")
        return 0
    if cmd == "tag":
        src, dst = rest
        repo, _, tag = dst.rpartition(":") if ":" in dst.rsplit("/", 1)[-1] else (dst, "", "latest")
        status, data = api("POST", f"/images/{urllib.parse.quote(src, safe='')}/tag?" +
                           urllib.parse.urlencode({"repo": repo, "tag": tag}))
        if status >= 400:
            raise ApiError(status, json.loads(data)["message"])
        return 0
    if cmd == "save":
        out = _pop_opt(rest, "-o", "--output")
        _pop_opt(rest, "--platform")
        status, data = api("GET", "/images/get?" + urllib.parse.urlencode([("names", r) for r in rest]))
        if status >= 400:
            raise ApiError(status, json.loads(data)["message"])
        if out:
            Path(out).write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
        return 0
    if cmd == "image" and rest[:1] == ["inspect"]:
        _print_items([api_json("GET", f"/images/{urllib.parse.quote(r, safe='')}/json") for r in rest[1:]], fmt)
        return 0
    print(f"fake docker: '{cmd} {' '.join(rest)}' is not simulated", file=sys.stderr)
    return 127


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["cli"]:
        return cli(argv[1:])
    parser = argparse.ArgumentParser(prog="fake_docker")
    parser.add_argument("mode", choices=["daemon"])
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--store", choices=["containerd", "classic"], default="containerd")
    parser.add_argument("--mtu", type=int, default=1500)
    ns = parser.parse_args(argv)
    serve(ns.state, ns.socket, store=ns.store, mtu=ns.mtu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
