#!/usr/bin/env python3
"""ferry copy benchmark: ferry's importImage against `skopeo copy --all`, side by side.

Starts everything it needs on 127.0.0.1 (two CNCF distribution registries, a throwaway
Postgres, `ferry serve`, latency proxies), generates images, runs each scenario several
times with a freshly emptied target registry per run, and prints a markdown table
(also written to bench/results/latest.md, raw samples to latest.json).

Python 3 standard library only. See bench/README.md. The `proxy` subcommand is the
latency proxy this script starts for itself.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import http.client
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
MiB = 1 << 20
GiB = 1 << 30
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST,
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])
API_VERSION = "2025-11-01"
IS_ROOT = os.geteuid() == 0


class BenchError(Exception):
    """A failure worth a clear one-line message (no traceback)."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1GiB, 256MiB)")
    unit = (m.group(2) or "B").upper()[0]
    return int(float(m.group(1)) * {"B": 1, "K": 1 << 10, "M": MiB, "G": GiB}[unit])


def human_size(n: float) -> str:
    return f"{n / GiB:g} GiB" if n >= GiB else f"{n / MiB:g} MiB"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------
# Processes: everything started here is tracked and stopped on exit / Ctrl-C.


class Processes:
    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def spawn(self, argv: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        self.running.append(proc)
        return proc

    def run(self, argv: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
        """Runs a command to completion in its own process group (killed on Ctrl-C)."""
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
        self.running.append(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            raise BenchError(f"timed out after {timeout:.0f}s: {shlex.join(argv)}")
        finally:
            if proc in self.running and proc.poll() is not None:
                self.running.remove(proc)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def stop(self, proc: subprocess.Popen, timeout: float = 15) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)


PROCS = Processes()


def wait_until(what: str, check, timeout: float, proc: subprocess.Popen | None = None,
               log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode}; log:\n{tail(log_path) if log_path else ''}")
        try:
            if check():
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.05)
    raise BenchError(f"{what} not ready after {timeout:.0f}s; log:\n{tail(log_path) if log_path else ''}")


# ---------------------------------------------------------------------------------
# /proc sampling


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


def machine_busy(since: tuple[int, int]) -> float:
    """Fraction of all CPUs busy since `since` (a cpu_jiffies() reading)."""
    busy, total = cpu_jiffies()
    return (busy - since[0]) / max(1, total - since[1])


def machine_cpu(since: tuple[int, int]) -> float:
    """CPU seconds the whole machine spent since `since`."""
    return (cpu_jiffies()[0] - since[0]) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(max_busy: float, max_wait: float) -> float:
    """Waits (up to max_wait s) until the machine's CPUs are less than max_busy busy over
    half a second, so other work on the machine does not land in a measurement.
    Returns the seconds waited."""
    start = time.monotonic()
    while True:
        mark = cpu_jiffies()
        time.sleep(0.5)
        busy = machine_busy(mark)
        waited = time.monotonic() - start
        if busy <= max_busy or waited >= max_wait:
            if waited >= max_wait and busy > max_busy:
                log(f"    machine still {busy:.0%} busy after {waited:.0f}s; measuring anyway")
            return waited
        if waited < 0.6:
            log(f"    machine {busy:.0%} busy (other work); waiting up to {max_wait:.0f}s")


class RssSampler(threading.Thread):
    """Samples VmRSS every 10 ms; VmHWM is reset first (clear_refs 5) and read at the end."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.stop_event = threading.Event()
        self.max_rss = 0
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.idle = proc_status(pid)["VmRSS"]

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.max_rss = max(self.max_rss, proc_status(self.pid)["VmRSS"])
            except OSError:
                return
            self.stop_event.wait(0.01)

    def finish(self) -> dict:
        self.stop_event.set()
        self.join()
        status = proc_status(self.pid)
        peak = max(self.max_rss, status["VmHWM"] if self.hwm_reset else 0)
        return {"idle_rss": self.idle, "peak_rss": peak, "growth": peak - self.idle}


# ---------------------------------------------------------------------------------
# Registries and their HTTP API


def http_request(host: str, method: str, url: str, body=None, headers: dict | None = None,
                 timeout: float = 600) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request on a fresh connection. `url` is a path or an absolute http URL."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme:
        host = parsed.netloc
        url = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    conn = http.client.HTTPConnection(host, timeout=timeout, blocksize=MiB)
    try:
        conn.request(method, url, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.headers, data
    finally:
        conn.close()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def start_upload(host: str, repo: str) -> str:
    status, headers, body = http_request(host, "POST", f"/v2/{repo}/blobs/uploads/",
                                         headers={"Content-Length": "0"})
    if status != 202:
        raise BenchError(f"POST upload on {host}/{repo}: {status} {body[:300]!r}")
    location = headers["Location"]
    return urllib.parse.urljoin(f"http://{host}/", location)


def with_digest(location: str, digest: str) -> str:
    return location + ("&" if "?" in location else "?") + "digest=" + urllib.parse.quote(digest)


def push_blob(host: str, repo: str, digest: str, size: int, body) -> None:
    location = start_upload(host, repo)
    status, _, data = http_request(host, "PUT", with_digest(location, digest), body=body,
                                   headers={"Content-Type": "application/octet-stream",
                                            "Content-Length": str(size)})
    if status != 201:
        raise BenchError(f"PUT blob {digest} on {host}/{repo}: {status} {data[:300]!r}")


def put_manifest(host: str, repo: str, ref: str, media_type: str, body: bytes) -> str:
    status, _, data = http_request(host, "PUT", f"/v2/{repo}/manifests/{ref}", body=body,
                                   headers={"Content-Type": media_type})
    if status != 201:
        raise BenchError(f"PUT manifest {repo}:{ref} on {host}: {status} {data[:300]!r}")
    return sha256_digest(body)


def manifest_digest(host: str, repo: str, ref: str) -> str | None:
    status, headers, _ = http_request(host, "HEAD", f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
    return headers.get("Docker-Content-Digest") if status == 200 else None


class RegistryProc:
    """A docker-registry (CNCF distribution) on a fixed port; `reset` restarts it empty."""

    def __init__(self, name: str, port: int, workdir: Path) -> None:
        self.name, self.port, self.workdir = name, port, workdir
        self.host = f"127.0.0.1:{port}"
        self.root = workdir / f"{name}-storage"
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        self.log_path = workdir / f"{name}-0.log"

    def _config(self) -> Path:
        path = self.workdir / f"{self.name}.yml"
        path.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root}\n"
            "  delete:\n    enabled: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            f"http:\n  addr: {self.host}\n  secret: ferry-bench-{self.name}\n")
        return path

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}-{self.generation}.log"
        self.proc = PROCS.spawn(["docker-registry", "serve", str(self._config())], self.log_path)
        wait_until(f"registry {self.name} ({self.host})",
                   lambda: http_request(self.host, "GET", "/v2/", timeout=2)[0] == 200,
                   20, self.proc, self.log_path)

    def stop(self) -> None:
        if self.proc is not None:
            PROCS.stop(self.proc)
            self.proc = None

    def reset(self, storage_parent: Path | None = None) -> None:
        """Restarts the registry on an empty storage dir (under `storage_parent`, default
        the workdir)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = (storage_parent or self.workdir) / f"{self.name}-storage"
        shutil.rmtree(self.root, ignore_errors=True)
        self.generation += 1
        self.start()
        os.sync()  # earlier runs' dirty pages must not be flushed during the next one

    def blob_path(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.root / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def log_offset(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def requests_since(self, offset: int) -> dict:
        """Requests logged since `offset`: per method, and distinct client connections."""
        return count_registry_log(self.log_path, offset)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc else float("nan")


LOG_METHOD = re.compile(r'http\.request\.method=(\w+)')
LOG_REMOTE = re.compile(r'http\.request\.remoteaddr="?([\d.:]+)')


def count_registry_log(path: Path, offset: int) -> dict:
    methods: dict[str, int] = {}
    remotes = set()
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            for raw in f:
                line = raw.decode("utf-8", "replace")
                if 'msg="response completed' not in line:
                    continue
                m = LOG_METHOD.search(line)
                if m:
                    methods[m.group(1)] = methods.get(m.group(1), 0) + 1
                r = LOG_REMOTE.search(line)
                if r:
                    remotes.add(r.group(1))
    except OSError:
        pass
    return {"requests": sum(methods.values()), "methods": methods, "connections": len(remotes)}


# ---------------------------------------------------------------------------------
# Images


@dataclass
class Image:
    repo: str
    tag: str
    digest: str
    blobs: list[tuple[str, int]]          # every distinct blob (configs included)
    layers: list[tuple[str, int]]         # the big ones (for the ceiling PUTs)
    manifests: int

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.tag}"

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.blobs)


def gzip_random(size: int):
    """Yields a gzip stream of about `size` bytes: random data in stored (level 0)
    deflate blocks. Layers must look compressed, or skopeo (whose registry destination
    wants compressed layers) gzips them and rewrites the manifest."""
    z = zlib.compressobj(0, zlib.DEFLATED, 31)
    left = size - (size // 65535 + 1) * 5 - 18  # stored-block headers and gzip framing
    while left > 0:
        chunk = os.urandom(min(left, 4 * MiB))
        left -= len(chunk)
        out = z.compress(chunk)
        if out:
            yield out
    yield z.flush()


def make_big_image(host: str, repo: str, tag: str, total: int, layers: int, scratch: Path) -> Image:
    """`layers` random gzip layers of ~total/layers bytes each, generated into a file and
    streamed from it (never held in memory), plus a config and an OCI manifest."""
    per = total // layers
    descs, blobs = [], []
    for i in range(layers):
        path = scratch / f"{repo.replace('/', '_')}-layer{i}"
        hasher = hashlib.sha256()
        size = 0
        with open(path, "wb") as f:
            for chunk in gzip_random(per):
                hasher.update(chunk)
                f.write(chunk)
                size += len(chunk)
        digest = "sha256:" + hasher.hexdigest()
        with open(path, "rb") as f:
            push_blob(host, repo, digest, size, f)
        path.unlink()
        descs.append({"mediaType": OCI_LAYER, "digest": digest, "size": size})
        blobs.append((digest, size))
        log(f"  {repo}: layer {i + 1}/{layers} ({human_size(size)}) pushed")
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]},
                         "config": {}, "created": "2026-01-01T00:00:00Z",
                         "comment": f"ferry bench {uuid.uuid4()}"}).encode()
    config_digest = sha256_digest(config)
    push_blob(host, repo, config_digest, len(config), config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                           "layers": descs}).encode()
    digest = put_manifest(host, repo, tag, OCI_MANIFEST, manifest)
    return Image(repo, tag, digest, [(config_digest, len(config))] + blobs, blobs, 1)


PLATFORMS = [("amd64", None), ("arm64", "v8"), ("arm", "v7"), ("ppc64le", None),
             ("s390x", None), ("386", None), ("riscv64", None), ("mips64le", None)]


def make_index_image(host: str, repo: str, tag: str, platforms: int, layers: int,
                     min_size: int, max_size: int, seed: int = 42) -> Image:
    """An OCI index of `platforms` images, each with its own config and `layers`
    small random layers (sizes drawn between min_size and max_size)."""
    rng = random.Random(seed)
    children, blobs = [], []
    for arch, variant in PLATFORMS[:platforms]:
        descs = []
        for _ in range(layers):
            data = b"".join(gzip_random(rng.randint(min_size, max_size)))
            digest = sha256_digest(data)
            push_blob(host, repo, digest, len(data), data)
            descs.append({"mediaType": OCI_LAYER, "digest": digest, "size": len(data)})
            blobs.append((digest, len(data)))
        platform = {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})}
        config = json.dumps({**platform, "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]},
                             "config": {}, "comment": f"ferry bench {uuid.uuid4()}"}).encode()
        config_digest = sha256_digest(config)
        push_blob(host, repo, config_digest, len(config), config)
        blobs.append((config_digest, len(config)))
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                               "layers": descs}).encode()
        digest = put_manifest(host, repo, sha256_digest(manifest), OCI_MANIFEST, manifest)
        children.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest), "platform": platform})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
    digest = put_manifest(host, repo, tag, OCI_INDEX, index)
    return Image(repo, tag, digest, blobs, [], platforms + 1)


# ---------------------------------------------------------------------------------
# Postgres and ferry


class Postgres:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "postgres"
        self.port = free_port()
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: [int(x) if x.isdigit() else 0 for x in re.split(r"\D+", str(p))])
        if not bins:
            raise BenchError("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin")
        self.bin = bins[-1].parent
        self.started = False
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _as_pg(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if IS_ROOT else argv

    def start(self) -> None:
        self.dir.mkdir(parents=True)
        if IS_ROOT:
            shutil.chown(self.dir, "postgres", "postgres")
        r = PROCS.run(self._as_pg([str(self.bin / "initdb"), "-D", str(self.dir), "-U", "postgres",
                                   "--auth=trust", "--encoding=UTF8", "--no-sync"]), 120)
        if r.returncode:
            raise BenchError(f"initdb failed: {r.stderr.decode()[-2000:]}")
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        r = PROCS.run(self._as_pg([str(self.bin / "pg_ctl"), "-D", str(self.dir), "-l",
                                   str(self.dir / "server.log"), "-w", "-o", opts, "start"]), 120)
        if r.returncode:
            raise BenchError(f"pg_ctl start failed: {r.stderr.decode()[-2000:]}\n{tail(self.dir / 'server.log')}")
        self.started = True

    def stop(self) -> None:
        if self.started:
            subprocess.run(self._as_pg([str(self.bin / "pg_ctl"), "-D", str(self.dir), "-m", "fast", "-w", "stop"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
            self.started = False


class FerryApi:
    """ferry's ARM API over one keep-alive connection."""

    def __init__(self, host: str, token: str, subscription: str) -> None:
        self.host, self.token, self.subscription = host, token, subscription
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, url: str, body: dict | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        parsed = urllib.parse.urlsplit(url)
        path = parsed.path + (f"?{parsed.query}" if parsed.query else "") if parsed.scheme else url
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, timeout=60)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, resp.headers, resp.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError

    def registry_url(self, name: str, tail_path: str = "") -> str:
        return (f"/subscriptions/{self.subscription}/resourceGroups/bench/providers/"
                f"Microsoft.ContainerRegistry/registries/{name}{tail_path}?api-version={API_VERSION}")

    def put_registry(self, name: str, login_server: str) -> None:
        status, _, body = self.request("PUT", self.registry_url(name), {
            "location": "westus", "sku": {"name": "Basic"}, "properties": {"loginServer": login_server}})
        if status not in (200, 201):
            raise BenchError(f"PUT registry {name}: {status} {body[:500]!r}")

    def start_import(self, target: str, source_host: str, image: Image) -> str:
        status, headers, body = self.request("POST", self.registry_url(target, "/importImage"), {
            "source": {"registryUri": source_host, "sourceImage": image.ref},
            "targetTags": [image.ref], "mode": "Force"})
        if status != 202 or "Location" not in headers:
            raise BenchError(f"importImage: {status} {body[:500]!r}")
        return headers["Location"]

    def wait(self, location: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            status, _, body = self.request("GET", location)
            if status == 200:
                return json.loads(body)
            if status != 202:
                raise BenchError(f"import failed: {status} {body[:800].decode(errors='replace')}")
            if time.monotonic() > deadline:
                raise BenchError(f"import still running after {timeout:.0f}s: {body[:300]!r}")
            time.sleep(delay)
            delay = min(delay * 1.25, 0.05)


def parse_time(text: str) -> dt.datetime:
    m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not m:
        raise BenchError(f"unexpected timestamp {text!r}")
    frac = (m.group(2) or "")[:6].ljust(6, "0")
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return dt.datetime.fromisoformat(f"{m.group(1)}.{frac}{zone}")


def time_digits(text: str) -> int:
    m = re.search(r"\.(\d+)", text)
    return len(m.group(1)) if m else 0


class Ferry:
    def __init__(self, binary: Path, workdir: Path, database_url: str, insecure: list[str],
                 extra_env: dict[str, str]) -> None:
        self.binary = binary
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log_path = workdir / "ferry.log"
        self.secret = os.urandom(32).hex()
        self.env = {**os.environ,
                    "DATABASE_URL": database_url,
                    "FERRY_LISTEN": self.host,
                    "FERRY_DATA_DIR": str(workdir / "ferry-data"),
                    "FERRY_JWT_SECRET": self.secret,
                    "FERRY_SECRET_KEY": os.urandom(32).hex(),
                    "FERRY_INSECURE_REGISTRIES": ",".join(insecure),
                    "FERRY_ALLOWED_PRIVATE_HOSTS": "127.0.0.1",
                    "RUST_LOG": os.environ.get("RUST_LOG", "info"),
                    **extra_env}
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            self.env.pop(var, None)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = PROCS.spawn([str(self.binary), "serve"], self.log_path, self.env)
        wait_until("ferry serve", lambda: http_request(self.host, "GET", "/readyz", timeout=2)[0] == 200,
                   120, self.proc, self.log_path)

    def token(self, tenant: str) -> str:
        r = PROCS.run([str(self.binary), "token", "--tenant", tenant, "--ttl", "2d", "--roles",
                       "ContainerRegistryContributor,ContainerRegistryDataImporter"], 60, self.env)
        if r.returncode:
            raise BenchError(f"ferry token failed: {r.stderr.decode()[-1000:]}")
        return r.stdout.decode().strip()

    def retries_since(self, offset: int) -> int:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return sum(1 for line in f if b"will retry" in line)
        except OSError:
            return 0

    def log_offset(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0


# ---------------------------------------------------------------------------------
# Latency proxy (run as `ferry_bench.py proxy ...`, one process per upstream)


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0]
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return first, headers


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _build_head(first: str, headers: list[tuple[str, str]]) -> bytes:
    return (first + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode("latin-1")


async def _copy_n(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    while n > 0:
        chunk = await reader.read(min(n, 256 * 1024))
        if not chunk:
            raise ConnectionError("peer closed mid-body")
        writer.write(chunk)
        n -= len(chunk)
        await writer.drain()


async def _pipe_body(reader, writer, headers, *, request: bool, no_body: bool) -> bool:
    """Forwards one message body as it streams (chunked framing passed through as is).
    Returns False when the body ends with the connection (no keep-alive possible)."""
    if no_body:
        return True
    te = _header(headers, "transfer-encoding")
    if te and "chunked" in te.lower():
        while True:
            line = await reader.readuntil(b"\r\n")
            writer.write(line)
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while True:
                    trailer = await reader.readuntil(b"\r\n")
                    writer.write(trailer)
                    if trailer == b"\r\n":
                        break
                await writer.drain()
                return True
            await _copy_n(reader, writer, size + 2)
    length = _header(headers, "content-length")
    if length is not None:
        await _copy_n(reader, writer, int(length))
        return True
    if request:
        return True
    while True:
        chunk = await reader.read(256 * 1024)
        if not chunk:
            return False
        writer.write(chunk)
        await writer.drain()


async def proxy_serve(listen: str, upstream: str, delay: float, log_path: str) -> None:
    lhost, lport = listen.rsplit(":", 1)
    uhost, uport = upstream.rsplit(":", 1)
    logf = open(log_path, "a", buffering=1)
    loop = asyncio.get_running_loop()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []  # reusable upstream connections

    async def upstream_conn() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while idle:
            reader, writer = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return await asyncio.open_connection(uhost, int(uport), limit=1 << 20)

    async def handle(creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        ureader = uwriter = None
        reusable = False
        peer = cwriter.get_extra_info("peername")
        try:
            while True:
                try:
                    first = await creader.readexactly(1)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if first == b"\x16":  # a TLS ClientHello (clients probing https): refuse like a plain server
                    cwriter.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                    await cwriter.drain()
                    return
                head = first + await creader.readuntil(b"\r\n\r\n")
                start = loop.time()
                request_line, headers = _parse_head(head)
                method, target, version = request_line.split(" ", 2)
                expect = _header(headers, "expect")
                client_close = (_header(headers, "connection") or "").lower() == "close"
                # Hop-by-hop headers are the proxy's business: upstream connections are pooled.
                headers = [(k, v) for k, v in headers if k.lower() not in ("expect", "connection", "keep-alive")]
                if delay:
                    await asyncio.sleep(delay)
                if uwriter is None:
                    ureader, uwriter = await upstream_conn()
                reusable = False
                uwriter.write(_build_head(request_line, headers))
                if expect and "100-continue" in expect.lower():
                    cwriter.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await _pipe_body(creader, uwriter, headers, request=True, no_body=False)
                await uwriter.drain()
                while True:
                    status_line, rheaders = _parse_head(await ureader.readuntil(b"\r\n\r\n"))
                    code = int(status_line.split(" ", 2)[1])
                    if 100 <= code < 200 and code != 101:
                        cwriter.write(_build_head(status_line, rheaders))
                        continue
                    break
                upstream_close = (_header(rheaders, "connection") or "").lower() == "close"
                rheaders = [(k, v.replace(f"//{upstream}", f"//{listen}") if k.lower() == "location" else v)
                            for k, v in rheaders if k.lower() not in ("connection", "keep-alive")]
                if client_close:
                    rheaders.append(("Connection", "close"))
                cwriter.write(_build_head(status_line, rheaders))
                keep = await _pipe_body(ureader, cwriter, rheaders, request=False,
                                        no_body=method == "HEAD" or code in (204, 304))
                await cwriter.drain()
                logf.write(f"{time.time():.6f} {peer[1]} {method} {target} {code} "
                           f"{(loop.time() - start) * 1000:.1f}ms\n")
                reusable = keep and not upstream_close
                if not keep or client_close or upstream_close or version == "HTTP/1.0":
                    return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError,
                IndexError) as error:
            logf.write(f"{time.time():.6f} {peer[1] if peer else '-'} ERROR {type(error).__name__}: {error}\n")
        finally:
            cwriter.close()
            if uwriter is not None:
                if reusable and len(idle) < 64:
                    idle.append((ureader, uwriter))
                else:
                    uwriter.close()

    server = await asyncio.start_server(handle, lhost, int(lport), limit=1 << 20, backlog=512)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


class Proxy:
    def __init__(self, name: str, port: int, upstream: str, delay_ms: float, workdir: Path) -> None:
        self.name, self.port, self.upstream, self.delay_ms = name, port, upstream, delay_ms
        self.host = f"127.0.0.1:{port}"
        self.log_path = workdir / f"proxy-{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = PROCS.spawn([sys.executable, "-u", str(Path(__file__).resolve()), "proxy",
                                 "--listen", self.host, "--upstream", self.upstream,
                                 "--delay-ms", str(self.delay_ms), "--log", str(self.log_path)],
                                self.log_path.with_suffix(".out"))

        def ready() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        wait_until(f"proxy {self.name}", ready, 20, self.proc, self.log_path.with_suffix(".out"))

    def stop(self) -> None:
        if self.proc is not None:
            PROCS.stop(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_offset(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc else 0.0

    def requests_since(self, offset: int) -> dict:
        methods: dict[str, int] = {}
        conns = set()
        errors = 0
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                for raw in f:
                    parts = raw.decode("utf-8", "replace").split()
                    if len(parts) < 3:
                        continue
                    if parts[2] == "ERROR":
                        errors += 1
                        continue
                    methods[parts[2]] = methods.get(parts[2], 0) + 1
                    conns.add(parts[1])
        except OSError:
            pass
        return {"requests": sum(methods.values()), "methods": methods, "connections": len(conns),
                "errors": errors}


# ---------------------------------------------------------------------------------
# The bench environment


@dataclass
class Sample:
    seconds: float
    extra: dict = field(default_factory=dict)


@dataclass
class Series:
    scenario: str
    tool: str
    image_bytes: int
    samples: list[Sample] = field(default_factory=list)

    def values(self, key: str | None = None) -> list[float]:
        return [s.seconds if key is None else s.extra[key] for s in self.samples if key is None or key in s.extra]


class Bench:
    def __init__(self, args: argparse.Namespace, ferry_binary: Path, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.scratch = workdir / "scratch"
        self.scratch.mkdir()
        self.src = RegistryProc("source", free_port(), workdir)
        self.dst = RegistryProc("target", free_port(), workdir)
        self.proxies: dict[str, Proxy] = {}
        self.target_proxies: list[Proxy] = []
        if "latency" in args.scenarios:
            for delay, label in ((0, "0ms"), (args.latency_ms, f"{args.latency_ms:g}ms")):
                for side, upstream in (("source", self.src.host), ("target", self.dst.host)):
                    proxy = Proxy(f"{side}-{label}", free_port(), upstream, delay, workdir)
                    self.proxies[f"{side}-{label}"] = proxy
                    if side == "target":
                        self.target_proxies.append(proxy)
        self.tmpfs_dir: Path | None = None
        if "latency" in args.scenarios and args.index_storage == "tmpfs":
            self.tmpfs_dir = Path(tempfile.mkdtemp(prefix="ferry-bench.", dir="/dev/shm"))
        self.postgres = Postgres(workdir)
        insecure = [self.src.host, self.dst.host] + [p.host for p in self.proxies.values()]
        self.ferry = Ferry(ferry_binary, workdir, self.postgres.url, insecure, args.ferry_env)
        self.api: FerryApi | None = None
        self.series: dict[tuple[str, str], Series] = {}
        self.notes: list[str] = []
        self.meta: dict = {}

    # -- setup -------------------------------------------------------------------
    def start(self) -> None:
        log("starting postgres, registries, ferry")
        self.postgres.start()
        self.src.start()
        self.dst.start()
        for proxy in self.proxies.values():
            proxy.start()
        self.ferry.start()
        tenant, sub = str(uuid.uuid4()), str(uuid.uuid4())
        self.api = FerryApi(self.ferry.host, self.ferry.token(tenant), sub)
        self.api.put_registry("benchtarget", self.dst.host)
        for proxy in self.target_proxies:
            self.api.put_registry(self.resource_for(proxy.host), proxy.host)
        self.meta["ferry_idle_rss_at_start"] = proc_status(self.ferry.proc.pid)["VmRSS"]

    @staticmethod
    def resource_for(host: str) -> str:
        return "benchtarget" + host.rsplit(":", 1)[1]

    def reset_target(self, storage_parent: Path | None = None) -> None:
        for proxy in self.target_proxies:
            proxy.stop()
        self.dst.reset(storage_parent)
        for proxy in self.target_proxies:
            proxy.start()

    def record(self, scenario: str, tool: str, image_bytes: int, sample: Sample) -> None:
        key = (scenario, tool)
        self.series.setdefault(key, Series(scenario, tool, image_bytes)).samples.append(sample)

    def verify(self, target_host: str, image: Image, tool: str) -> None:
        got = manifest_digest(target_host, image.repo, image.tag)
        if got != image.digest:
            raise BenchError(f"{tool}: target has {image.ref} as {got}, expected {image.digest}")

    # -- the three ways to move bytes --------------------------------------------
    def run_ferry(self, image: Image, source_host: str, target_host: str, timeout: float,
                  sample_rss: bool = True) -> Sample:
        resource = "benchtarget" if target_host == self.dst.host else self.resource_for(target_host)
        pid = self.ferry.proc.pid
        log_off, src_off, dst_off = self.ferry.log_offset(), self.src.log_offset(), self.dst.log_offset()
        proxy_marks = self._proxy_marks()
        cpu0, src_cpu0, dst_cpu0 = cpu_seconds(pid), self.src.cpu(), self.dst.cpu()
        waited = wait_for_quiet(self.args.max_busy, self.args.max_wait)
        sampler = RssSampler(pid) if sample_rss else None
        if sampler:
            sampler.start()
        mark = cpu_jiffies()
        t0 = time.monotonic()
        location = self.api.start_import(resource, source_host, image)
        body = self.api.wait(location, timeout)
        wall = time.monotonic() - t0
        rss = sampler.finish() if sampler else {}
        start, end = body.get("startTime"), body.get("endTime")
        if not start or not end:
            raise BenchError(f"poll body has no startTime/endTime: {body}")
        op = (parse_time(end) - parse_time(start)).total_seconds()
        self.meta.setdefault("time_digits", set()).update({time_digits(start), time_digits(end)})
        extra = {"wall": wall, "op": op, "cpu": cpu_seconds(pid) - cpu0, "machine_busy": machine_busy(mark),
                 "machine_cpu": machine_cpu(mark), "waited_for_quiet": waited,
                 "source_cpu": self.src.cpu() - src_cpu0, "target_cpu": self.dst.cpu() - dst_cpu0,
                 "source_requests": self.src.requests_since(src_off),
                 "target_requests": self.dst.requests_since(dst_off),
                 "retries": self.ferry.retries_since(log_off),
                 "progress": body.get("properties", {}).get("progress"), **rss}
        extra.update(self._proxy_requests(proxy_marks))
        if extra["retries"]:
            self.notes.append(f"ferry re-queued an import {extra['retries']}x during a run "
                              f"(see ferry.log); that run's time includes the backoff")
        self.verify(target_host, image, "ferry")
        return Sample(op, extra)

    def run_skopeo(self, image: Image, source_host: str, target_host: str, timeout: float) -> Sample:
        timefile = self.scratch / "skopeo-time.txt"
        timefile.unlink(missing_ok=True)
        copy = ["skopeo", "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
                f"docker://{source_host}/{image.ref}", f"docker://{target_host}/{image.ref}"]
        timed = ["/usr/bin/time", "-v", "-o", str(timefile), *copy]
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        if IS_ROOT:
            # An empty blob-info cache, or skopeo reuses what it pushed before.
            argv = ["unshare", "-m", "sh", "-c",
                    "mount -t tmpfs tmpfs /var/lib/containers/cache && exec " + shlex.join(timed)]
        else:
            env["XDG_DATA_HOME"] = tempfile.mkdtemp(dir=self.scratch)
            argv = timed
        src_off, dst_off = self.src.log_offset(), self.dst.log_offset()
        proxy_marks = self._proxy_marks()
        src_cpu0, dst_cpu0 = self.src.cpu(), self.dst.cpu()
        waited = wait_for_quiet(self.args.max_busy, self.args.max_wait)
        mark = cpu_jiffies()
        t0 = time.monotonic()
        r = PROCS.run(argv, timeout, env)
        wall = time.monotonic() - t0
        if r.returncode:
            raise BenchError(f"skopeo copy failed ({r.returncode}): {r.stderr.decode(errors='replace')[-2000:]}")
        timing = timefile.read_text()

        def field_of(label: str) -> float:
            m = re.search(rf"{re.escape(label)}: ([\d.]+)", timing)
            return float(m.group(1)) if m else float("nan")
        extra = {"wall": wall, "peak_rss": field_of("Maximum resident set size (kbytes)") * 1024,
                 "machine_busy": machine_busy(mark), "machine_cpu": machine_cpu(mark),
                 "waited_for_quiet": waited,
                 "cpu": field_of("User time (seconds)") + field_of("System time (seconds)"),
                 "source_cpu": self.src.cpu() - src_cpu0, "target_cpu": self.dst.cpu() - dst_cpu0,
                 "source_requests": self.src.requests_since(src_off),
                 "target_requests": self.dst.requests_since(dst_off)}
        extra.update(self._proxy_requests(proxy_marks))
        self.verify(target_host, image, "skopeo")
        return Sample(wall, extra)

    def _proxy_marks(self) -> dict[str, tuple[int, float]]:
        return {n: (p.log_offset(), p.cpu()) for n, p in self.proxies.items()}

    def _proxy_requests(self, marks: dict[str, tuple[int, float]]) -> dict:
        out = {}
        cpu = 0.0
        for name, proxy in self.proxies.items():
            offset, cpu0 = marks[name]
            counted = proxy.requests_since(offset if proxy.log_offset() >= offset else 0)
            if counted["requests"] or counted["errors"]:
                counted["cpu"] = proxy.cpu() - cpu0
                cpu += counted["cpu"]
                out[f"proxy_{name}"] = counted
        if out:
            out["proxy_cpu"] = cpu
        return out

    def run_curl_puts(self, image: Image) -> Sample:
        """The target's ingest ceiling: the image's layers, read from the source registry's
        storage files, PUT in parallel as monolithic uploads with curl."""
        results: list = [None] * len(image.layers)
        dst_cpu0 = self.dst.cpu()

        def one(i: int, digest: str) -> None:
            try:
                location = start_upload(self.dst.host, image.repo)
                r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
                                    "-T", str(self.src.blob_path(digest)), "-H", "Expect:",
                                    "-H", "Content-Type: application/octet-stream",
                                    with_digest(location, digest)],
                                   capture_output=True, timeout=3600)
                results[i] = r.stdout.decode().strip() if r.returncode == 0 else r.stderr.decode()
            except Exception as error:  # reported below
                results[i] = repr(error)
        threads = [threading.Thread(target=one, args=(i, d)) for i, (d, _) in enumerate(image.layers)]
        wait_for_quiet(self.args.max_busy, self.args.max_wait)
        mark = cpu_jiffies()
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        if any(r != "201" for r in results):
            raise BenchError(f"ceiling PUTs failed: {results}")
        return Sample(elapsed, {"target_cpu": self.dst.cpu() - dst_cpu0, "machine_busy": machine_busy(mark),
                                "bytes": sum(s for _, s in image.layers)})

    def run_curl_pipes(self, image: Image) -> Sample:
        """A copy without verification: each layer `curl GET source | curl PUT target`
        (chunked), all in parallel. Includes the source's cost of serving the bytes, which
        the PUT ceiling leaves out, so it bounds what any copier can do on this machine."""
        results: list = [None] * len(image.layers)
        src_cpu0, dst_cpu0 = self.src.cpu(), self.dst.cpu()

        def one(i: int, digest: str) -> None:
            try:
                location = start_upload(self.dst.host, image.repo)
                get = shlex.join(["curl", "-sS", "-f", f"http://{self.src.host}/v2/{image.repo}/blobs/{digest}"])
                put = shlex.join(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "-T", "-",
                                  "-H", "Expect:", "-H", "Content-Type: application/octet-stream",
                                  with_digest(location, digest)])
                r = subprocess.run(["bash", "-c", f"set -o pipefail; {get} | {put}"],
                                   capture_output=True, timeout=3600)
                results[i] = r.stdout.decode().strip() if r.returncode == 0 else r.stderr.decode()
            except Exception as error:  # reported below
                results[i] = repr(error)
        threads = [threading.Thread(target=one, args=(i, d)) for i, (d, _) in enumerate(image.layers)]
        wait_for_quiet(self.args.max_busy, self.args.max_wait)
        mark = cpu_jiffies()
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        if any(r != "201" for r in results):
            raise BenchError(f"GET|PUT pipes failed: {results}")
        return Sample(elapsed, {"source_cpu": self.src.cpu() - src_cpu0, "target_cpu": self.dst.cpu() - dst_cpu0,
                                "machine_busy": machine_busy(mark)})

    def run_curl_gets(self, image: Image) -> Sample:
        """Source read speed: the same layers GET in parallel to /dev/null."""
        procs = []
        wait_for_quiet(self.args.max_busy, self.args.max_wait)
        t0 = time.monotonic()
        for digest, _ in image.layers:
            procs.append(subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                           f"http://{self.src.host}/v2/{image.repo}/blobs/{digest}"],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        codes = [p.communicate()[0].decode().strip() for p in procs]
        elapsed = time.monotonic() - t0
        if any(c != "200" for c in codes):
            raise BenchError(f"source GETs failed: {codes}")
        return Sample(elapsed, {"bytes": sum(s for _, s in image.layers)})

    # -- scenarios ---------------------------------------------------------------
    def scenario_cold(self, image: Image, label: str, reimport: bool, skopeo_recopy: bool) -> None:
        runs = self.args.runs
        timeout = max(600, image.total_bytes / (5 * MiB))
        for i in range(runs):
            log(f"[{label}] run {i + 1}/{runs}: source read (curl GET x{len(image.layers)})")
            self.record(label, "source read", image.total_bytes, self.run_curl_gets(image))
            log(f"[{label}] run {i + 1}/{runs}: ceiling (curl PUT x{len(image.layers)})")
            self.reset_target()
            self.record(label, "ceiling", image.total_bytes, self.run_curl_puts(image))
            log(f"[{label}] run {i + 1}/{runs}: pipe ceiling (curl GET | curl PUT x{len(image.layers)})")
            self.reset_target()
            self.record(label, "GET|PUT pipes", image.total_bytes, self.run_curl_pipes(image))
            log(f"[{label}] run {i + 1}/{runs}: ferry")
            self.reset_target()
            s = self.run_ferry(image, self.src.host, self.dst.host, timeout)
            self.record(label, "ferry", image.total_bytes, s)
            log(f"    ferry {s.seconds:.2f}s op ({s.extra['wall']:.2f}s wall), "
                f"{image.total_bytes / MiB / s.seconds:.0f} MiB/s, RSS +{s.extra['growth'] / MiB:.1f} MiB")
            if reimport:
                r = self.run_ferry(image, self.src.host, self.dst.host, timeout)
                self.record(f"{label} re-import", "ferry", image.total_bytes, r)
                log(f"    ferry re-import {r.seconds * 1000:.1f} ms op ({r.extra['wall'] * 1000:.1f} ms wall)")
            log(f"[{label}] run {i + 1}/{runs}: skopeo")
            self.reset_target()
            s = self.run_skopeo(image, self.src.host, self.dst.host, timeout)
            self.record(label, "skopeo", image.total_bytes, s)
            log(f"    skopeo {s.seconds:.2f}s, {image.total_bytes / MiB / s.seconds:.0f} MiB/s, "
                f"peak RSS {s.extra['peak_rss'] / MiB:.1f} MiB")
            if skopeo_recopy:
                r = self.run_skopeo(image, self.src.host, self.dst.host, timeout)
                self.record(f"{label} re-import", "skopeo", image.total_bytes, r)
                log(f"    skopeo re-copy {r.seconds * 1000:.0f} ms")

    def scenario_latency(self, image: Image) -> None:
        lat = f"{self.args.latency_ms:g}ms"
        variants = [("index, direct", self.src.host, self.dst.host)]
        variants.append(("index, proxy 0 ms both sides", self.proxies["source-0ms"].host,
                         self.proxies["target-0ms"].host))
        for sides in self.args.latency_sides:
            if sides == "both":
                variants.append((f"index, +{lat} both sides", self.proxies[f"source-{lat}"].host,
                                 self.proxies[f"target-{lat}"].host))
            else:
                variants.append((f"index, +{lat} source only", self.proxies[f"source-{lat}"].host,
                                 self.dst.host))
        for i in range(self.args.runs):
            for label, src, dst in variants:  # interleaved, so drift hits every variant alike
                log(f"[{label}] run {i + 1}/{self.args.runs}")
                self.reset_target(self.tmpfs_dir)
                s = self.run_ferry(image, src, dst, 600)
                self.record(label, "ferry", image.total_bytes, s)
                self.reset_target(self.tmpfs_dir)
                k = self.run_skopeo(image, src, dst, 600)
                self.record(label, "skopeo", image.total_bytes, k)
                log(f"    ferry {s.seconds:.3f}s op ({s.extra['wall']:.3f}s wall), skopeo {k.seconds:.3f}s")


# ---------------------------------------------------------------------------------
# Report


def fmt_s(x: float) -> str:
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


def check(ok: bool) -> str:
    return "✓" if ok else "✗"


def render(bench: Bench, args: argparse.Namespace, command: str) -> tuple[str, dict]:
    S = bench.series
    med = statistics.median
    rows: list[list[str]] = []
    details: list[list[str]] = []

    def get(scenario: str, tool: str) -> Series | None:
        return S.get((scenario, tool))

    def tput(series: Series, seconds: float) -> str:
        return f"{series.image_bytes / MiB / seconds:.0f} MiB/s"

    def time_row(series: Series, goal: str = "") -> None:
        v = series.values()
        rows.append([series.scenario, series.tool, str(len(v)), fmt_s(min(v)), fmt_s(med(v)),
                     tput(series, med(v)), goal])

    def ratio_row(scenario: str, name: str, num: float, den: float, goal_text: str, ok: bool) -> None:
        rows.append([scenario, name, "", "", "", "", f"{num / den:.2f} {goal_text} {check(ok)}"])

    cold_labels = [l for l in dict.fromkeys(s.scenario for s in S.values())
                   if get(l, "ceiling") is not None]
    for label in cold_labels:
        ceiling, ferry, skopeo, read = get(label, "ceiling"), get(label, "ferry"), get(label, "skopeo"), \
            get(label, "source read")
        c_med = med(ceiling.values())
        if read:
            time_row(read, "context: loopback reads")
        time_row(ceiling, "the target's ingest ceiling")
        pipes = get(label, "GET|PUT pipes")
        if pipes:
            time_row(pipes, f"{c_med / med(pipes.values()):.2f} of ceiling; context: a copy without "
                            "verification, source serving included")
        for tool in (ferry, skopeo):
            if tool is None:
                continue
            frac = c_med / med(tool.values())
            goal = f"{frac:.2f} of ceiling"
            if pipes:
                goal += f", {med(pipes.values()) / med(tool.values()):.2f} of pipes"
            if tool is ferry:
                goal += f" (goal ≥ 0.90) {check(frac >= 0.9)}"
            time_row(tool, goal)
        if ferry and skopeo:
            r = med(ferry.values()) / med(skopeo.values())
            ratio_row(label, "ferry / skopeo", med(ferry.values()), med(skopeo.values()),
                      "(goal ≤ 1.0)", r <= 1.0)
        re_ferry, re_skopeo = get(f"{label} re-import", "ferry"), get(f"{label} re-import", "skopeo")
        if re_ferry and ferry:
            r = med(re_ferry.values()) / med(ferry.values())
            time_row(re_ferry, f"{r:.3f} of cold copy (goal ≤ 0.05) {check(r <= 0.05)}")
        if re_skopeo and skopeo:
            r = med(re_skopeo.values()) / med(skopeo.values())
            time_row(re_skopeo, f"{r:.3f} of its cold copy (context)")
        if ferry:
            g = [x / MiB for x in ferry.values("growth")]
            peak = max(ferry.values("peak_rss")) / MiB
            idle = [x / MiB for x in ferry.values("idle_rss")]
            at_start = bench.meta.get("ferry_idle_rss_at_start", 0) / MiB
            rows.append([f"{label} memory", "ferry peak RSS − idle before the copy", str(len(g)),
                         f"{min(g):.1f} MiB", f"{med(g):.1f} MiB",
                         f"max {max(g):.1f} MiB; idle before the copies {min(idle):.1f}–{max(idle):.1f} MiB, "
                         f"highest peak {peak:.1f} MiB (+{peak - at_start:.1f} over idle at ferry start)",
                         f"max growth {max(g):.1f} MiB (goal ≤ 32 MiB) {check(max(g) <= 32)}"])
        if skopeo:
            p = [x / MiB for x in skopeo.values("peak_rss")]
            rows.append([f"{label} memory", "skopeo peak RSS", str(len(p)), f"{min(p):.1f} MiB",
                         f"{med(p):.1f} MiB", f"max {max(p):.1f} MiB", "context"])

    lat_labels = [l for l in dict.fromkeys(s.scenario for s in S.values()) if l.startswith("index,")]
    direct = {t: get("index, direct", t) for t in ("ferry", "skopeo")}
    for label in lat_labels:
        ferry, skopeo = get(label, "ferry"), get(label, "skopeo")
        for tool in (ferry, skopeo):
            if tool is None:
                continue
            goal = ""
            if "proxy 0 ms" in label and direct.get(tool.tool):
                over = med(tool.values()) - med(direct[tool.tool].values())
                goal = f"proxy overhead {over * 1000:+.0f} ms vs direct"
            time_row(tool, goal)
        if ferry and skopeo:
            r = med(ferry.values()) / med(skopeo.values())
            is_goal = "+" in label
            ratio_row(label, "ferry / skopeo", med(ferry.values()), med(skopeo.values()),
                      "(goal ≤ 0.5)" if is_goal else "(context)", r <= 0.5 or not is_goal)

    header = ["scenario", "tool", "runs", "min", "median", "throughput (median)", "ratio vs goal"]
    table = [header, ["---"] * len(header)] + rows

    # Details: op vs wall time, CPU, requests and connections per run.
    for series in S.values():
        if series.tool in ("ceiling", "source read", "GET|PUT pipes"):
            if series.tool == "GET|PUT pipes":
                busy = series.values("machine_busy")
                details.append([series.scenario, series.tool, "", "",
                                f"src {med(series.values('source_cpu')):.2f} / dst "
                                f"{med(series.values('target_cpu')):.2f} (curl not counted)",
                                f"machine {med(busy):.0%} busy", "", ""])
            if series.tool == "ceiling":
                cpu = series.values("target_cpu")
                busy = series.values("machine_busy")
                details.append([series.scenario, series.tool, "", "", f"target {med(cpu):.2f}",
                                f"machine {med(busy):.0%} busy", "", ""])
            continue
        last = series.samples[-1].extra

        def req(side: str) -> str:
            # Behind a proxy, count what the tool sent to the proxy (the proxy pools upstream).
            proxied = [v for k, v in last.items() if k.startswith(f"proxy_{side}-")]
            r = proxied[0] if proxied else (last.get(f"{side}_requests") or {})
            if not r.get("requests"):
                return ""
            methods = " ".join(f"{m} {n}" for m, n in sorted(r["methods"].items()))
            return f"{r['requests']} ({methods}) on {r['connections']} conn{' (at proxy)' if proxied else ''}"
        wall = med(series.values("wall"))
        op = med(series.values("op")) if series.tool == "ferry" else None
        cpu = f"{med(series.values('cpu')):.2f}"
        cpu += f" / src {med(series.values('source_cpu')):.2f} / dst {med(series.values('target_cpu')):.2f}"
        if series.values("proxy_cpu"):
            cpu += f" / proxies {med(series.values('proxy_cpu')):.2f}"
        other = [x.extra["machine_cpu"] - x.extra["cpu"] - x.extra["source_cpu"] - x.extra["target_cpu"]
                 - x.extra.get("proxy_cpu", 0.0) for x in series.samples if "machine_cpu" in x.extra]
        busy = series.values("machine_busy")
        details.append([series.scenario, series.tool, fmt_s(op) if op is not None else "—", fmt_s(wall), cpu,
                        f"{med(other):.2f} (max {max(other):.2f}); machine {med(busy):.0%} busy" if other else "",
                        req("source"), req("target")])
    dheader = ["scenario", "tool", "op time (median)", "client wall (median)",
               "CPU s: tool / source reg / target reg [/ proxies] (median)",
               "other CPU s during run (everything else: ferry's Postgres, this script, other work)",
               "source requests (last run)",
               "target requests (last run)"]
    dtable = [dheader, ["---"] * len(dheader)] + details

    def md(t: list[list[str]]) -> str:
        return "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in t)

    digits = sorted(bench.meta.get("time_digits", set()))
    m = bench.meta
    lines = [
        "# ferry copy benchmark",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
        f"- command: `{command}`",
        f"- ferry: `{m['ferry_binary']}` ({m['ferry_source']}), blob concurrency "
        f"{args.ferry_env.get('FERRY_BLOB_CONCURRENCY', '6 (default)')}",
        f"- skopeo: {m.get('skopeo_version', '?')}; registry: {m.get('registry_version', '?')}",
        f"- machine: {os.cpu_count()} CPUs, {m.get('mem_total', '?')} RAM, workdir on `{m.get('workdir_fs', '?')}`",
        f"- images: cold `{human_size(args.size)}` in {args.layers} layers; big `{human_size(args.big_size)}` in "
        f"{args.layers} layers; index {args.platforms} platforms × {args.small_layers} layers of "
        f"{human_size(args.small_min)}–{human_size(args.small_max)} (+ config each)",
        f"- each run copies into a freshly emptied target registry; skopeo runs with an empty blob-info cache; "
        f"{args.runs} runs each, interleaved",
        f"- registry storage: source on `{m.get('workdir_fs', '?')}`; target on the same for the cold copies, on "
        f"{'tmpfs (/dev/shm)' if args.index_storage == 'tmpfs' else 'disk'} for the index scenarios",
        f"- latency proxy: Python asyncio, one process per registry, pooled upstream connections, delay added "
        f"before forwarding each request (not to connection set-up); its own cost is the 'proxy 0 ms' rows",
        "- ferry times are the operation's own `endTime − startTime` from the poll body "
        f"(fractional-second digits seen: {digits or '?'}); skopeo times are the process's wall time; "
        "throughput = image bytes / median time",
        f"- ferry idle RSS at start: {m.get('ferry_idle_rss_at_start', 0) / MiB:.1f} MiB",
        "",
        md(table),
        "",
        "## Details",
        "",
        md(dtable),
        "",
    ]
    if bench.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in dict.fromkeys(bench.notes)] + [""]
    raw = {"meta": {k: (sorted(v) if isinstance(v, set) else v) for k, v in m.items()},
           "series": [{"scenario": s.scenario, "tool": s.tool, "image_bytes": s.image_bytes,
                       "samples": [{"seconds": x.seconds, **x.extra} for x in s.samples]} for s in S.values()]}
    return "\n".join(lines), raw


# ---------------------------------------------------------------------------------
# Main


def build_ferry() -> tuple[Path, str]:
    if not (REPO / "Cargo.toml").exists():
        raise BenchError(f"no Cargo.toml in {REPO}; pass --ferry PATH")
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    log(f"building ferry (release) in {REPO}, target dir {target_dir}")
    env = {**os.environ, "SQLX_OFFLINE": "true", "CARGO_TARGET_DIR": str(target_dir)}
    r = subprocess.run(["cargo", "build", "--release", "--locked"], cwd=REPO, env=env)
    if r.returncode:
        raise BenchError("cargo build failed")
    return target_dir / "release" / "ferry", describe_source(REPO)


def describe_source(repo: Path) -> str:
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "src", "Cargo.lock",
                                "Cargo.toml", "migrations"], capture_output=True, text=True).stdout.strip()
        return f"built from {repo} @ {rev}{' + uncommitted changes' if dirty else ''}"
    except (OSError, subprocess.CalledProcessError):
        return f"built from {repo}"


def preflight() -> None:
    missing = [t for t in ("docker-registry", "skopeo", "curl", "runuser" if IS_ROOT else "true")
               if shutil.which(t) is None]
    if not Path("/usr/bin/time").exists():
        missing.append("/usr/bin/time (Debian package `time`)")
    if IS_ROOT and shutil.which("unshare") is None:
        missing.append("unshare")
    if missing:
        raise BenchError("missing tools: " + ", ".join(missing))
    if IS_ROOT:
        try:
            import pwd
            pwd.getpwnam("postgres")
        except KeyError:
            raise BenchError("running as root needs a `postgres` user (PostgreSQL refuses to run as root)")
        Path("/var/lib/containers/cache").mkdir(parents=True, exist_ok=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ferry", type=Path, help="ferry binary to benchmark (default: cargo build --release "
                   "--locked in the repository this script lives in)")
    p.add_argument("--scenarios", default="cold,reimport,latency,memory",
                   help="comma-separated: cold (1 GiB copy + ceiling), reimport, latency, memory (big image)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--size", type=parse_size, default=GiB, help="cold-copy image size")
    p.add_argument("--big-size", type=parse_size, default=4 * GiB, help="memory-scenario image size")
    p.add_argument("--layers", type=int, default=4, help="layers of the cold and big images")
    p.add_argument("--platforms", type=int, default=4, help="platforms of the latency index (max 8)")
    p.add_argument("--small-layers", type=int, default=10, help="layers per platform in the latency index")
    p.add_argument("--small-min", type=parse_size, default=32 * 1024)
    p.add_argument("--small-max", type=parse_size, default=MiB)
    p.add_argument("--latency-ms", type=float, default=25)
    p.add_argument("--latency-sides", default="both,source",
                   help="which registries sit behind the latency proxy: both, source, or both,source")
    p.add_argument("--index-storage", choices=["tmpfs", "disk"], default="tmpfs",
                   help="target registry storage for the index/latency scenarios (on disk, the registry's "
                   "per-upload file creation costs 10-50 ms and drowns the round trips)")
    p.add_argument("--max-busy", type=float, default=0.25,
                   help="before each measured run, wait until the machine's CPUs are at most this busy")
    p.add_argument("--max-wait", type=float, default=30, help="longest wait for a quiet machine, seconds")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 64 MiB / 256 MiB images, 2 runs, results to results/quick.md")
    p.add_argument("--ferry-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for ferry serve, e.g. FERRY_BLOB_CONCURRENCY=8")
    p.add_argument("--workdir", type=Path, help="parent for the temp dir (default: $TMPDIR or /tmp); "
                   "must be reachable by the postgres user when run as root")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, storage) at the end")
    p.add_argument("--out", type=Path, help="markdown output (default: bench/results/latest.md; "
                   "a .json with raw samples is written next to it)")
    args = p.parse_args(argv)
    if args.quick:
        explicit = set(a.split("=")[0] for a in argv)
        if "--size" not in explicit:
            args.size = 64 * MiB
        if "--big-size" not in explicit:
            args.big_size = 256 * MiB
        if "--runs" not in explicit:
            args.runs = 2
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - {"cold", "reimport", "latency", "memory"}
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    args.latency_sides = [s.strip() for s in args.latency_sides.split(",") if s.strip()]
    if set(args.latency_sides) - {"both", "source"}:
        p.error("--latency-sides takes both, source or both,source")
    if not 1 <= args.platforms <= len(PLATFORMS):
        p.error(f"--platforms must be 1..{len(PLATFORMS)}")
    env = {}
    for item in args.ferry_env:
        if "=" not in item:
            p.error(f"--ferry-env needs KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        env[k] = v
    args.ferry_env = env
    if args.out is None:
        args.out = BENCH_DIR / "results" / ("quick.md" if args.quick else "latest.md")
    if args.runs < 1:
        p.error("--runs must be ≥ 1")
    return args


def version_of(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def main(argv: list[str]) -> int:
    if argv[:1] == ["proxy"]:
        pp = argparse.ArgumentParser(prog="ferry_bench.py proxy")
        pp.add_argument("--listen", required=True)
        pp.add_argument("--upstream", required=True)
        pp.add_argument("--delay-ms", type=float, default=0)
        pp.add_argument("--log", required=True)
        a = pp.parse_args(argv[1:])
        asyncio.run(proxy_serve(a.listen, a.upstream, a.delay_ms / 1000, a.log))
        return 0

    args = parse_args(argv)
    command = shlex.join(["bench/ferry_bench.py", *argv])
    preflight()
    if args.ferry:
        binary = args.ferry.resolve()
        if not os.access(binary, os.X_OK):
            raise BenchError(f"--ferry {binary} is not an executable file")
        source = "given with --ferry"
    else:
        binary, source = build_ferry()
    parent = args.workdir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="ferry-bench.", dir=parent))
    workdir.chmod(0o755)
    bench: Bench | None = None

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        bench = Bench(args, binary, workdir)
        bench.meta.update({
            "ferry_binary": str(binary), "ferry_source": source,
            "skopeo_version": version_of(["skopeo", "--version"]),
            "registry_version": version_of(["docker-registry", "--version"]),
            "mem_total": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GiB:.0f} GiB",
            "workdir_fs": subprocess.run(["df", "--output=fstype", str(workdir)], capture_output=True,
                                         text=True).stdout.split()[-1],
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        })
        log(f"workdir {workdir}; ferry {binary}")
        bench.start()
        want = set(args.scenarios)
        if want & {"cold", "reimport"}:
            log(f"generating the cold image ({human_size(args.size)}, {args.layers} layers)")
            image = make_big_image(bench.src.host, "bench/cold", "v1", args.size, args.layers, bench.scratch)
            bench.scenario_cold(image, f"cold {human_size(args.size)}", "reimport" in want, "reimport" in want)
        if "latency" in want:
            log(f"generating the index ({args.platforms} platforms × {args.small_layers} layers)")
            index = make_index_image(bench.src.host, "bench/multi", "v1", args.platforms, args.small_layers,
                                     args.small_min, args.small_max)
            bench.scenario_latency(index)
        if "memory" in want:
            log(f"generating the big image ({human_size(args.big_size)}, {args.layers} layers)")
            big = make_big_image(bench.src.host, "bench/big", "v1", args.big_size, args.layers, bench.scratch)
            bench.scenario_cold(big, f"cold {human_size(args.big_size)}", False, False)
        report, raw = render(bench, args, command)
        print(report)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
        log(f"wrote {args.out} and {args.out.with_suffix('.json')}")
        return 0
    except BenchError as error:
        log(f"error: {error}")
        log(f"logs are in {workdir} (kept)")
        args.keep = True
        return 1
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        PROCS.stop_all()
        if bench is not None:
            bench.postgres.stop()
            if bench.tmpfs_dir is not None:
                shutil.rmtree(bench.tmpfs_dir, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
