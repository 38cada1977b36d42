"""`cadence serve` under load, on loopback: enroll 10,000 people through the
API (one JSON request), then hold a steady rate of task and feed reads (200
requests a second by default) and report their latencies. Each latency runs
from when its request was due to be sent, so a server that falls behind shows
it (no coordinated omission). Goal (issue 13): p95 <= 50 ms on SQLite;
PostgreSQL's figures are reported beside.

Run: ``python benchmarks/serve.py [--people 10000] [--rate 200] [--seconds 15]
[--postgres URL]`` (the PostgreSQL part runs in a schema of its own, dropped
afterwards; leave out --postgres for SQLite only).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cadence(*args: str, db: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cadence", *args, "--db", db],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


class Connection:
    """One keep-alive HTTP/1.1 connection, spoken by hand: the load generator
    shares the server's two cores, and a full client (httpx: 2.6 ms of CPU a
    request, half a core at 200 requests a second) would measure itself."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def get(self, path: str, head: bytes) -> int:
        self.writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\n" + head)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])


async def load(
    url: str, token: str, rate: float, seconds: float, task_ids: list[int], feed_end: int
) -> list[float]:
    """Requests at ``rate`` a second for ``seconds``: a third each of a page
    of tasks, one task, and a page of the feed."""
    rng = random.Random(7)
    host, port = url.removeprefix("http://").split(":")
    head = f"Host: {host}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    idle: list[Connection] = []
    latencies: list[float] = []
    failures: list[int] = []

    async def connect() -> Connection:
        return Connection(*await asyncio.open_connection(host, int(port)))

    async def one(due: float, path: str) -> None:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        connection = idle.pop() if idle else await connect()
        try:
            status = await connection.get(path, head)
        except (ConnectionError, IndexError, asyncio.IncompleteReadError):
            # The server closed a connection that sat idle (uvicorn: after 5 s).
            connection = await connect()
            status = await connection.get(path, head)
        latencies.append(time.perf_counter() - due)
        idle.append(connection)
        if status != 200:
            failures.append(status)

    begin = time.perf_counter() + 0.5
    jobs = []
    for number in range(int(rate * seconds)):
        kind = number % 3
        if kind == 0:
            path = f"/api/v1/tasks?limit=20&offset={rng.randrange(0, 2000)}"
        elif kind == 1:
            path = f"/api/v1/tasks/{rng.choice(task_ids)}"
        else:
            path = f"/api/v1/feed?after={rng.randrange(0, max(feed_end - 50, 1))}&limit=50"
        jobs.append(one(begin + number / rate, path))
    await asyncio.gather(*jobs)
    for connection in idle:
        connection.writer.close()
    if failures:
        raise SystemExit(f"{len(failures)} requests failed: {sorted(set(failures))}")
    return latencies


def measure(db: str, label: str, people: int, rate: float, seconds: float, workers: int) -> None:
    token = cadence("token", "create", "bench", db=db)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cadence", "serve", "--db", db, "--port", str(port),
         "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
            for _ in range(200):
                try:
                    client.get("/api/v1/campaigns")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            source = (EXAMPLES / "q1-outbound.campaign").read_text()
            templates = {
                "templates/bump.txt.j2": (EXAMPLES / "templates" / "bump.txt.j2").read_text()
            }
            added = client.post(
                "/api/v1/campaigns", json={"source": source, "templates": templates}
            ).json()
            rows = [{"email": f"p{n}@example.com", "first_name": f"P{n}", "company": f"C{n % 97}"}
                    for n in range(people)]  # fmt: skip
            began = time.perf_counter()
            enrolled = client.post(
                f"/api/v1/campaigns/{added['identity']}/enrollments",
                json={"people": rows, "start": "now"},
            )
            took = time.perf_counter() - began
            assert enrolled.status_code == 201, enrolled.text
            tasks = client.get("/api/v1/tasks", params={"limit": 500}).json()
            last = client.get("/api/v1/feed", params={"after": people * 7, "limit": 500}).json()[
                "next_after"
            ]
        print(f"{label}: enroll {people:,} people through the API: {took:.2f} s "
              f"({people / took:,.0f} people/s)")  # fmt: skip
        cpu = time.process_time()
        latencies = asyncio.run(
            load(url, token, rate, seconds, [t["id"] for t in tasks], last or 1)
        )
        own = (time.process_time() - cpu) / len(latencies) * 1000
        ordered = sorted(latencies)
        p50 = statistics.median(ordered) * 1000
        p95 = ordered[int(0.95 * len(ordered))] * 1000
        p99 = ordered[int(0.99 * len(ordered))] * 1000
        print(f"{label}: {len(ordered):,} reads at {rate:.0f}/s: p50 {p50:.1f} ms, "
              f"p95 {p95:.1f} ms, p99 {p99:.1f} ms (goal: p95 <= 50 ms; "
              f"the load generator's own CPU: {own:.2f} ms a request)")  # fmt: skip
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL to measure too")
    parser.add_argument("--workers", type=int, default=1, help="serve's worker processes")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cadence-serve-bench-"))
    measure(
        str(folder / "cadence.db"), "SQLite", args.people, args.rate, args.seconds, args.workers
    )
    if args.postgres:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(args.postgres, autocommit=True) as connection:
            connection.execute(f"CREATE SCHEMA {schema}")
        try:
            url = f"{args.postgres}?options=-csearch_path%3D{schema}"
            measure(url, "PostgreSQL", args.people, args.rate, args.seconds, args.workers)
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as connection:
                connection.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
