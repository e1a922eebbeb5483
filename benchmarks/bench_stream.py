"""The stream mode's client: trades per second from a WebSocket feed to the broker, on one core.

A fake provider in a process of its own (on the other core) answers the handshake and the
subscription like a Polygon.io-style feed, then sends ``--count`` trades (with a quote every
ten) in frames of 500 events as fast as the socket takes them; its history endpoint has
nothing to fill. The client is marketpipe's StreamSource, pinned to one core, publishing every
trade to the local broker; it runs until the last trade is acknowledged. The baseline, same
session and core: a plain loop that receives the frames and parses them with ``json.loads``,
publishing nothing.

    python benchmarks/bench_stream.py [--runs 5] [--count 300000] [--smoke] [--running-services]
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import SecretStr

from harness import arguments, report, stack, unique
from marketpipe.ingest.polygon import PolygonClient
from marketpipe.ingest.stream import StreamSource
from marketpipe.kafka import Publisher, ensure_topics, pipeline_topics
from marketpipe.local.process import free_port
from marketpipe.runtime import StopFlag
from marketpipe.settings import LiveSettings

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "META"]
PER_FRAME = 500
TARGET = 50_000


def frames(count: int) -> list[str]:
    events: list[dict[str, Any]] = []
    seq = dict.fromkeys(SYMBOLS, 0)
    t = time.time_ns() // 1_000_000
    for i in range(count):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        seq[symbol] += 1
        if i % 10 == 0:
            events.append({"ev": "Q", "sym": symbol, "bp": 99.99, "bs": 3, "ap": 100.01,
                           "as": 5, "t": t})  # fmt: skip
        events.append({"ev": "T", "sym": symbol, "p": 100.0, "s": 100, "t": t + i // 1000,
                       "q": seq[symbol], "i": str(i)})  # fmt: skip
    return [json.dumps(events[i : i + PER_FRAME]) for i in range(0, len(events), PER_FRAME)]


def provider(ws_port: int, rest_port: int, count: int, ready: Any) -> None:
    """The fake feed and an empty history, in their own process on the second core."""
    from websockets.sync.server import serve

    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    prebuilt = frames(count)

    def handle(ws: Any) -> None:
        for message in ws:
            action = json.loads(message).get("action")
            if action == "auth":
                ws.send(json.dumps([{"ev": "status", "status": "auth_success"}]))
            elif action == "subscribe":
                ws.send(json.dumps([
                    {"ev": "status", "status": "success", "message": f"subscribed to: {c}"}
                    for c in json.loads(message)["params"].split(",")
                ]))  # fmt: skip
                for frame in prebuilt:
                    ws.send(frame)

    class Empty(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"status": "OK", "results": []}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    rest = ThreadingHTTPServer(("127.0.0.1", rest_port), Empty)
    threading.Thread(target=rest.serve_forever, daemon=True).start()
    with serve(handle, "127.0.0.1", ws_port) as server:
        ready.set()
        server.serve_forever()


def plain_loop(url: str, count: int) -> float:
    """Receive and json.loads every frame: the floor of any client."""
    from websockets.sync.client import connect

    with connect(url) as ws:
        ws.send(json.dumps({"action": "auth", "params": "k"}))
        ws.recv()
        started = time.perf_counter()
        ws.send(json.dumps({"action": "subscribe", "params": "T.*"}))
        trades = 0
        while trades < count:
            trades += sum(1 for e in json.loads(ws.recv()) if e["ev"] == "T")
        return count / (time.perf_counter() - started)


def ours(cfg: LiveSettings, kafka: Any, count: int) -> float:
    topic = unique("stream")
    kafka = kafka.model_copy(update={"topic_raw": topic})
    ensure_topics(kafka, pipeline_topics(kafka)[:1])
    source = StreamSource(cfg, PolygonClient(cfg), Publisher(kafka), topic, {})
    stop = StopFlag()
    started = time.perf_counter()

    def watch() -> None:
        while source.published < count and not stop.is_set():
            time.sleep(0.01)
        stop.set("done")

    threading.Thread(target=watch, daemon=True).start()
    summary = source.run(stop)  # returns once every trade is acknowledged (publisher.close)
    elapsed = time.perf_counter() - started
    if summary.published != count or not summary.delivery.ok:
        raise SystemExit(f"published {summary.published} of {count}: {summary.lines()}")
    return count / elapsed


def main() -> int:
    args = arguments(__doc__.split("\n", 1)[0])
    with stack(args, ["kafka"]) as bench:
        plain, mine = [], []
        for i in range(args.runs):
            for measure in ("plain", "ours"):
                ws_port, rest_port = free_port(), free_port()
                ready = multiprocessing.Event()
                server = multiprocessing.Process(
                    target=provider, args=(ws_port, rest_port, args.count, ready), daemon=True
                )
                server.start()
                ready.wait(30)
                cfg = LiveSettings(
                    mode="stream", stream_url=f"ws://127.0.0.1:{ws_port}",
                    base_url=f"http://127.0.0.1:{rest_port}", api_key=SecretStr("k"),
                    symbols=SYMBOLS, max_requests_per_s=1000, coverage_interval_s=0,
                )  # fmt: skip
                try:
                    if measure == "plain":
                        plain.append(plain_loop(cfg.stream_url, args.count))
                    else:
                        mine.append(ours(cfg, bench.kafka, args.count))
                finally:
                    server.terminate()
                    server.join(10)
            print(f"run {i + 1}/{args.runs}: plain receive+parse {plain[-1]:>9,.0f} trades/s  "
                  f"stream source to the broker {mine[-1]:>9,.0f} trades/s",
                  flush=True)  # fmt: skip
        ratios = [m / p for m, p in zip(mine, plain, strict=True)]
        rows = [
            ("plain loop: receive + json.loads, no publish",
             f"{statistics.median(plain):>10,.0f} /s"),
            ("stream source: parse, dedup, quote, encode, publish",
             f"{statistics.median(mine):>10,.0f} /s"),
            ("ratio stream source / plain (median of run ratios)",
             f"{statistics.median(ratios):>12.2f}"),
            ("target: stream source", f">= {TARGET:,} /s"),
        ]  # fmt: skip
        report(f"medians of {args.runs} runs, {args.count:,} trades each, client on one core",
               rows)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
