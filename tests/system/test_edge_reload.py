"""The Caddy dropship's edge runs (dev/caddy.sh, the version of edge.image) keeps every request across
reloads: each release reloads the edge to switch a service's traffic, under load, over HTTP/2. The edge's own
main Caddyfile and a site as a release renders it, on loopback addresses of this machine; 60 reloads, each
moving the route to the other of two upstreams, while vegeta sends 100 requests a second."""

from __future__ import annotations

import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dev.harness import wait_until
from dev.harness.engine import go_tool
from dev.harness.vegeta import Vegeta
from dropship.remote.commands import SCRIPTS

sys.path.insert(0, str(SCRIPTS))  # the host's modules, as the server imports them
import edge

pytestmark = pytest.mark.system  # needs Go (dev/caddy.sh) and root (ports 80 and 443)

EDGE = "127.77.0.1"
ADMIN = "127.0.0.1:2977"  # its admin API checks the Host header: a loopback name it knows
UPSTREAMS = ("127.77.0.2", "127.77.0.3")
HOSTNAME = "edge.test"
RELOADS = 60
RATE = 100


class Upstream:
    """A small HTTP server on ADDRESS:8080 that counts the requests it answered."""

    def __init__(self, address: str) -> None:
        self.hits = 0
        lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with lock:
                    upstream.hits += 1
                body = address.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((address, 8080), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _local(text: str, root: Path) -> str:
    """The edge's paths under `root`, Caddy bound to the test's loopback address, its admin API on ADMIN."""
    text = text.replace("/etc/caddy", str(root))
    assert "\tadmin 127.0.0.1:2019\n" in text or "admin" not in text, text
    return text.replace("\tadmin 127.0.0.1:2019\n", f"\tadmin {ADMIN}\n\tdefault_bind {EDGE}\n")


@pytest.fixture(scope="module")
def caddy() -> str:
    """The Caddy binary dev/caddy.sh builds (once)."""
    return go_tool("caddy")


@pytest.fixture
def site(caddy: str, tmp_path: Path) -> Iterator[tuple[edge.Site, Path, Path]]:
    """The edge's Caddy running with its main Caddyfile: (the site, the site file, the main file)."""
    site = edge.Site(project="reload", hostnames=(HOSTNAME,), routes=(edge.Route.parse("/* web:8080 /"),), tls_mode="cloudflare-origin")
    tls = tmp_path / "stacks" / "reload" / "tls"
    tls.mkdir(parents=True)
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"),
            *("-subj", f"/CN={HOSTNAME}", "-addext", f"subjectAltName=DNS:{HOSTNAME}"),
            *("-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem")),
        ],
        check=True,
        capture_output=True,
    )
    (tmp_path / "sites").mkdir()
    site_file = tmp_path / "sites" / "reload.caddy"
    site_file.write_text(_local(site.render({"web": [UPSTREAMS[0]]}), tmp_path))
    main = tmp_path / "dropship.caddy"
    main.write_text(_local(edge.MAIN_CADDYFILE, tmp_path))
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    log = (tmp_path / "caddy.log").open("wb")
    process = subprocess.Popen([caddy, "run", "--config", str(main), "--adapter", "caddyfile"], env=env, stdout=log, stderr=log)
    try:
        wait_until(
            lambda: _answers(f"http://{ADMIN}/config/"), "the edge's admin API", 30, lambda: (tmp_path / "caddy.log").read_text()[-2000:]
        )
        yield site, site_file, main
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def _more_than(upstream: Upstream, hits: int) -> bool:
    return upstream.hits > hits


@pytest.fixture
def upstreams() -> Iterator[tuple[Upstream, ...]]:
    servers = tuple(Upstream(address) for address in UPSTREAMS)
    yield servers
    for server in servers:
        server.close()


def test_sixty_reloads_under_http2_load_fail_no_request(
    caddy: str, site: tuple[edge.Site, Path, Path], upstreams: tuple[Upstream, ...], tmp_path: Path
) -> None:
    spec, site_file, main = site
    cert = tmp_path / "stacks" / "reload" / "tls" / "cert.pem"
    with Vegeta(f"https://{HOSTNAME}/", EDGE, cert, rate=RATE) as load:
        wait_until(lambda: upstreams[0].hits > 0, "a request through the edge", 30)
        for reload in range(1, RELOADS + 1):
            target = upstreams[reload % 2]
            before = target.hits
            staged = site_file.with_suffix(".new")
            staged.write_text(_local(spec.render({"web": [UPSTREAMS[reload % 2]]}), tmp_path))
            staged.rename(site_file)  # whole, as Edge.write does
            subprocess.run(
                [caddy, "reload", "--config", str(main), "--adapter", "caddyfile", "--address", ADMIN],
                check=True,
                capture_output=True,
                timeout=60,
            )
            wait_until(
                partial(_more_than, target, before + RATE // 2),
                f"reload {reload}: half a second of requests at {UPSTREAMS[reload % 2]}",
                30,
            )
    report = load.report()
    print(f"\n{RELOADS} reloads at {RATE}/s over HTTP/2: {report}")
    assert report.failed == 0, report.errors
    assert report.sent >= RELOADS * RATE // 2, str(report)
    assert min(upstream.hits for upstream in upstreams) >= RELOADS // 2 * RATE // 2
