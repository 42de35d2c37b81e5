"""Real servers on 127.0.0.1 for the tests, each started as a child process in a temp folder and stopped after:

* :func:`postgres_cluster`: a throwaway PostgreSQL 15 cluster (``initdb`` + ``pg_ctl`` of the Debian packages,
  trust authentication on 127.0.0.1, fsync off), run as the ``postgres`` user when the tests run as root;
* :func:`pgstac_api`: pgstac installed in such a cluster (``pypgstac migrate``) and stac-fastapi-pgstac served
  by uvicorn, Transactions extension on, so the tests load their items through the API itself;
* :func:`nginx_server`: nginx serving a folder (HTTP range requests), logging every request with the bytes of
  body it sent, so a test can count what a windowed read cost;
* :func:`fault_proxy`: an HTTP proxy in front of any of them that fails on demand (HTTP errors, delays,
  truncated bodies: :class:`tests.stac_helpers.Faults`).

The system packages come from ``scripts/system-deps.sh``; :func:`require` skips a test without them, or fails
it under ``CI=true``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from .stac_helpers import Faults, serving

PG_BIN = Path(os.environ.get("SITEWATCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
INSTALL_HINT = "install them with scripts/system-deps.sh (as root)"


def require(what: str, ok: bool, hint: str = INSTALL_HINT) -> None:
    """Skip the test when ``ok`` is false, with the reason; under ``CI=true`` fail instead."""
    if ok:
        return
    message = f"{what} is not available; {hint}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true requires it)")
    pytest.skip(message)


def have_postgres() -> bool:
    return (PG_BIN / "initdb").is_file() and (PG_BIN / "pg_ctl").is_file() and Path(
        "/usr/share/postgresql/15/extension/postgis.control").is_file()


def have_nginx() -> bool:
    return Path(NGINX).is_file()


def have_stac_fastapi() -> bool:
    try:
        import pypgstac  # noqa: F401
        import stac_fastapi.pgstac  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(ok: object, what: str, proc: subprocess.Popen[bytes] | None, log: Path | None, limit: float = 60.0) -> None:
    """Poll ``ok()`` until it is true; fail with the server's log if it dies or never answers."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if ok():  # type: ignore[operator]
                return
        except (OSError, requests.RequestException):
            pass
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
    raise RuntimeError(f"{what} did not start (exit code {proc.poll() if proc else None}):\n{tail}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- PostgreSQL -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str = "postgres"
    database: str = "postgres"

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def create_database(self, name: str) -> str:
        """A new, empty database of the cluster; its SQLAlchemy URL (psycopg 3)."""
        import sqlalchemy as sa

        admin = sa.create_engine(self.dsn.replace("postgresql://", "postgresql+psycopg://"),
                                 isolation_level="AUTOCOMMIT")  # CREATE DATABASE runs outside a transaction
        try:
            with admin.connect() as c:
                c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{name}"


@contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    """A new PostgreSQL cluster in a temp folder on a free port of 127.0.0.1 (trust auth), removed on exit.

    ``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres`` user.
    """
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    tmp = Path(tempfile.mkdtemp(prefix="sitewatch-pg-"))
    if as_root:
        shutil.chown(tmp, "postgres")
    data, log = tmp / "data", tmp / "postgres.log"
    port = free_port()
    started = False
    try:
        subprocess.run([*prefix, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], check=True, capture_output=True, timeout=120)
        opts = (f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=50")
        subprocess.run([*prefix, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w",
                        "-t", "60", "start"], check=True, capture_output=True, timeout=90)
        started = True
        yield Postgres(port)
    except subprocess.CalledProcessError as exc:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr.decode(errors='replace')}\n{tail}") from None
    finally:
        if started:
            subprocess.run([*prefix, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


# -- stac-fastapi-pgstac ----------------------------------------------------------------------------------


@dataclass
class StacApi:
    url: str
    db: Postgres
    session: requests.Session = field(default_factory=requests.Session)

    def add_collection(self, collection: dict[str, object]) -> None:
        r = self.session.post(f"{self.url}/collections", json=collection, timeout=30)
        r.raise_for_status()

    def add_items(self, collection_id: str, items: list[dict[str, object]]) -> None:
        """Insert items through the Transactions extension (one POST of a FeatureCollection)."""
        body = {"type": "FeatureCollection", "features": [dict(i, collection=collection_id) for i in items]}
        r = self.session.post(f"{self.url}/collections/{collection_id}/items", json=body, timeout=60)
        if r.status_code >= 300:
            raise RuntimeError(f"loading items failed: HTTP {r.status_code}: {r.text[:500]}")


@contextmanager
def pgstac_api() -> Iterator[StacApi]:
    """stac-fastapi-pgstac over a throwaway pgstac database, at ``http://127.0.0.1:<free port>``."""
    with postgres_cluster() as db:
        subprocess.run([sys.executable, "-m", "pypgstac.pypgstac", "migrate", "--dsn", db.dsn], check=True,
                       capture_output=True, timeout=300)
        port = free_port()
        env = dict(os.environ, PGUSER=db.user, PGPASSWORD="unused", PGHOST="127.0.0.1", PGPORT=str(db.port),
                   PGDATABASE=db.database, ENABLE_TRANSACTIONS_EXTENSIONS="true", DB_MIN_CONN_SIZE="1",
                   DB_MAX_CONN_SIZE="4", WEB_CONCURRENCY="1")
        tmp = Path(tempfile.mkdtemp(prefix="sitewatch-api-"))
        log = tmp / "uvicorn.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app", "--factory",
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                 "--timeout-graceful-shutdown", "1"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait(lambda: requests.get(f"{url}/_mgmt/ping", timeout=2).ok, "stac-fastapi-pgstac", proc, log)
            yield StacApi(url, db)
        finally:
            _stop(proc)
            shutil.rmtree(tmp, ignore_errors=True)


# -- nginx ------------------------------------------------------------------------------------------------

_NGINX_CONF = """\
{user}
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    types {{ image/tiff tif tiff; application/json json; }}
    default_type application/octet-stream;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    log_format bytes '$request_method $uri $status $body_bytes_sent "$http_range"';
    access_log {tmp}/access.log bytes;
    sendfile on;
    keepalive_requests 10000;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    status: int
    bytes: int
    range: str


@dataclass
class Nginx:
    """nginx serving ``root`` at ``url``; :meth:`requests` reads its access log."""

    url: str
    root: Path
    log: Path

    def sync(self) -> None:
        """Wait until every answered request is in the access log (one worker logs in order)."""
        marker = f"/__sync__/{time.monotonic_ns()}"
        requests.get(self.url + marker, timeout=10)
        _wait(lambda: marker in self.log.read_text(), "the nginx access log", None, self.log, limit=10)

    def requests(self) -> list[Request]:
        self.sync()
        out = []
        for line in self.log.read_text().splitlines():
            method, path, status, nbytes, rng = line.split(" ", 4)
            if not path.startswith(("/__sync__/", "/__ping__")):
                out.append(Request(method, path, int(status), int(nbytes), rng.strip('"')))
        return out

    def served(self, path: str) -> int:
        """Bytes of body sent for ``path`` (URL path, e.g. ``/scenes/x.tif``) since the last :meth:`clear`."""
        return sum(r.bytes for r in self.requests() if r.path == path)

    def clear(self) -> None:
        self.sync()
        self.log.write_text("")  # nginx appends (O_APPEND): truncating in place is safe


@contextmanager
def nginx_server(root: Path) -> Iterator[Nginx]:
    """nginx (one worker, range requests) serving ``root`` on a free port of 127.0.0.1, with its own config."""
    tmp = Path(tempfile.mkdtemp(prefix="sitewatch-nginx-"))
    port = free_port()
    user = "user root root;" if os.geteuid() == 0 else ""  # as root, workers would run as nobody
    conf = tmp / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(user=user, tmp=tmp, port=port, root=Path(root).resolve()))
    log = tmp / "access.log"
    log.touch()
    proc = subprocess.Popen([NGINX, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: requests.get(url + "/__ping__", timeout=2).status_code == 404, "nginx", proc,
              tmp / "error.log")
        yield Nginx(url, Path(root), log)
    finally:
        _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


# -- a failing proxy ----------------------------------------------------------------------------------------

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "te", "trailer",
        "upgrade", "proxy-connection"}


class FaultProxy(ThreadingHTTPServer):
    """Forwards every request to ``upstream`` (the Host header kept, so the API's links name the proxy),
    failing on demand: ``faults`` (:class:`Faults`) matched against a request's path, query and body (so
    ``match="next:"`` fails the pages after the first of a pgstac search, GET or POST)."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = urlsplit(upstream)
        self.faults = Faults()
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, int]] = []  # method, path?query + "\n" + body, status sent

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # the client gave up (timeouts): not news
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    def take_fault(self, path: str) -> str:
        with self.lock:
            f = self.faults
            if not f.kind or f.count == 0 or f.match not in path:
                return ""
            if f.count > 0:
                f.count -= 1
            return f.kind

    def statuses(self, match: str = "") -> list[int]:
        with self.lock:
            return [s for _, p, s in self.log if match in p]


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # keep-alive with headers and body in two writes: without TCP_NODELAY, Nagle meets the client's delayed
    # ACK and every request waits ~40 ms
    disable_nagle_algorithm = True
    server: FaultProxy

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._forward()

    def do_POST(self) -> None:  # noqa: N802
        self._forward()

    def do_HEAD(self) -> None:  # noqa: N802
        self._forward()

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, length: int | None = None) -> None:
        with self.server.lock:
            self.server.log.append((self.command, self.key, status))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self) -> None:
        srv = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
        self.key = f"{self.path}\n{body.decode('utf-8', 'replace')}"
        fault = srv.take_fault(self.key)
        if fault == "status":
            return self._send(srv.faults.status, [("Content-Type", "application/json")],
                              json.dumps({"code": "InjectedFault", "description": "injected by the test"}).encode())
        if fault == "delay":
            time.sleep(srv.faults.delay)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP | {"accept-encoding"}}
        conn = http.client.HTTPConnection(srv.upstream.hostname, srv.upstream.port, timeout=60)
        try:
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
        finally:
            conn.close()
        if fault == "truncate":  # announce the whole body, send half of it, hang up
            self.close_connection = True
            return self._send(resp.status, out, data[: len(data) // 2], length=len(data))
        self._send(resp.status, out, data)


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` to ``upstream`` on a free port of 127.0.0.1, stopped on exit."""
    with serving(FaultProxy(upstream)) as srv:
        yield srv
