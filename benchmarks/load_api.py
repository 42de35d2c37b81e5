"""A bounded load test of the API on loopback (#13): concurrent clients list detections and fetch scene tiles.

Usage: ``python benchmarks/load_api.py [--users 50] [--seconds 60] [--demo DIR]`` (``make bench-api``; needs the
``load`` extra: locust).

Runs the demo (``sitewatch demo``'s world and detection; reused from ``--demo`` when it is there), adds a
viewer with an API token, starts ``sitewatch serve`` on 127.0.0.1 in its own process, then runs ``--users``
locust users in this process for ``--seconds``: each waits 0.5-1.5 s between requests (an analyst's pace, not a
flood) and either lists a page of the base's detections (``GET /api/sites/{name}/detections``, also filtered
by date) or fetches a map tile of one of its clear scenes (``GET /api/scenes/{id}/tiles/{z}/{x}/{y}.png``,
zoom 12-15 over the site: what the site page asks for).  Prints a table (requests, failures, median, p95,
p99, requests/s per kind) and writes ``benchmarks/results/load-<timestamp>.json`` and ``load-latest.json``.
The issue's bar: no failure, p95 under 300 ms for the lists and under 500 ms for a tile.
"""

from __future__ import annotations

# locust patches the standard library with gevent's: it must come first
from locust import HttpUser, between, task  # isort: skip
from locust.env import Environment  # isort: skip

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TARGETS_MS = {"list detections": 300.0, "list sites": 300.0, "tile": 500.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(demo: Path) -> tuple[str, str, list[str], list[tuple[int, int, int]]]:
    """The demo's store with a viewer's token; the base's name, its clear scenes and the tiles over it."""
    import morecantile

    from sitewatch.accounts import add_user, create_token, list_users
    from sitewatch.demo import BASE_NAME, run_demo
    from sitewatch.settings import get_settings
    from sitewatch.store import Store

    if not (demo / "detections.geojson").exists():
        print(f"running the demo in {demo} (world and detection, a few minutes the first time)", flush=True)
        run_demo(demo)
    store = Store(get_settings(home=demo).database_url)
    if "loadtest" not in {u.name for u in list_users(store)}:
        add_user(store, "loadtest", "viewer", "load test password", actor="benchmark")
    token = create_token(store, "loadtest", actor="benchmark")[1]
    run = store.latest_run(BASE_NAME)
    assert run is not None
    clear = [s for s, c in zip(run.scene_ids, run.clear_fraction, strict=True) if c >= 0.2]
    w, s, e, n = store.get_site(BASE_NAME).geometry.bounds
    tms = morecantile.tms.get("WebMercatorQuad")
    tiles = [(t.z, t.x, t.y) for t in tms.tiles(w, s, e, n, zooms=[12, 13, 14, 15])]
    return token, BASE_NAME, clear, tiles


def serve(demo: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SITEWATCH_HOME": str(demo)}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sitewatch", "serve", "--port", str(port), "--log-level",
                                 "warning"], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/openapi.json", timeout=2).read()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"sitewatch serve did not start:\n{log.read_text()[-2000:]}") from None
            time.sleep(0.3)


def make_user(token: str, site: str, scenes: list[str], tiles: list[tuple[int, int, int]]) -> type[HttpUser]:
    auth = {"Authorization": f"Bearer {token}"}

    class Analyst(HttpUser):
        wait_time = between(0.5, 1.5)

        @task(2)
        def detections(self) -> None:
            params = random.choice(["limit=100", "limit=20&offset=0", "start=2023-06-01T00:00:00Z&limit=100",
                                    "status=confirmed&limit=100"])
            self.client.get(f"/api/sites/{site}/detections?{params}", headers=auth, name="list detections")

        @task(1)
        def sites(self) -> None:
            self.client.get("/api/sites", headers=auth, name="list sites")

        @task(4)
        def tile(self) -> None:
            z, x, y = random.choice(tiles)
            scene = random.choice(scenes)
            with self.client.get(f"/api/scenes/{scene}/tiles/{z}/{x}/{y}.png?bands=B04,B03,B02", headers=auth,
                                 name="tile", catch_response=True) as r:
                if r.status_code not in (200, 204):
                    r.failure(f"HTTP {r.status_code}")

    return Analyst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--demo", type=Path, default=Path("sitewatch-demo"),
                    help="the demo's output folder (made when missing, reused otherwise)")
    args = ap.parse_args(argv)
    demo = args.demo.resolve()
    token, site, scenes, tiles = prepare(demo)
    port = _free_port()
    proc = serve(demo, port, demo / "load-serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        env = Environment(user_classes=[make_user(token, site, scenes, tiles)], host=url)
        runner = env.create_local_runner()
        print(f"{args.users} users for {args.seconds:.0f} s against {url} ({len(scenes)} clear scenes, "
              f"{len(tiles)} tiles over the site at zoom 12-15)", flush=True)
        runner.start(args.users, spawn_rate=args.users)
        gevent.sleep(args.seconds)
        runner.quit()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    rows: list[dict[str, Any]] = []
    for name in ("list detections", "list sites", "tile"):
        st = env.stats.get(name, "GET")
        rows.append({"request": name, "requests": st.num_requests, "failures": st.num_failures,
                     "median_ms": st.get_response_time_percentile(0.5),
                     "p95_ms": st.get_response_time_percentile(0.95),
                     "p99_ms": st.get_response_time_percentile(0.99),
                     "max_ms": round(st.max_response_time, 1), "rps": round(st.total_rps, 1),
                     "target_p95_ms": TARGETS_MS[name]})
        rows[-1]["ok"] = rows[-1]["failures"] == 0 and (rows[-1]["p95_ms"] or 0) < TARGETS_MS[name]
    errors = {str(k): v.occurrences for k, v in env.stats.errors.items()}
    print(f"\n{'request':<16}{'n':>7}{'fail':>6}{'median':>9}{'p95':>8}{'p99':>8}{'max':>9}{'req/s':>8}  p95 target")
    for r in rows:
        print(f"{r['request']:<16}{r['requests']:>7}{r['failures']:>6}{r['median_ms']:>7.0f}ms{r['p95_ms']:>6.0f}ms"
              f"{r['p99_ms']:>6.0f}ms{r['max_ms']:>7.0f}ms{r['rps']:>8.1f}  < {r['target_p95_ms']:.0f} ms "
              f"{'ok' if r['ok'] else 'MISSED'}")
    if errors:
        print("errors:", errors)
    out = {"benchmark": "load_api", "at": datetime.now(UTC).isoformat(timespec="seconds"), "users": args.users,
           "seconds": args.seconds, "wait_s": [0.5, 1.5], "rows": rows, "errors": errors,
           "machine": {"cpus": os.cpu_count()},
           "command": "python benchmarks/load_api.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for path in (RESULTS / f"load-{stamp}.json", RESULTS / "load-latest.json"):
        path.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if all(r["ok"] for r in rows) and not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
