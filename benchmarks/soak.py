"""``make soak``: every stage running for a long time at a fixed rate; does anything grow?

Producer -> checker -> features job (PostgreSQL + Parquet on S3), on a local stack of its own.
Every few seconds: RSS and CPU of each stage and service (whole process trees), each stage's
lag, and the features job's latency (``written_at - last_event_time`` of the 1 s bars written
since the previous sample). Writes ``bench/results/soak-<time>.json`` and a PNG plot, and
prints each process's memory growth after warm-up (target: at most 10%).

    python -m benchmarks.soak --minutes 30 --rate 2000     # SOAK_MINUTES / SOAK_RATE too
    python -m benchmarks.soak --seconds 20                  # the smoke run in `make test`
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.pipeline import Pipeline, PipelineConfig, make_folder, stop_on_sigterm
from benchmarks.pipeline.latency import row_latency
from benchmarks.pipeline.resources import ResourceSampler

log = logging.getLogger("soak")
GROWTH_TARGET_PCT = 10.0
ROOT = Path(__file__).resolve().parent.parent


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "30"))
    )
    parser.add_argument("--seconds", type=float, help="run length in seconds (overrides minutes)")
    parser.add_argument("--rate", type=float, default=float(os.environ.get("SOAK_RATE", "2000")))
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument(
        "--warmup", type=float, help="seconds left out of the growth figure (default: a fifth)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--keep", action="store_true", help="keep the stack's folder and logs")
    return parser.parse_args()


def growth(samples: list[dict[str, Any]], warmup_s: float) -> dict[str, dict[str, float]]:
    """Per process: median RSS over the first and the last fifth after warm-up, and growth."""
    after = [s for s in samples if s["t"] >= warmup_s]
    out: dict[str, dict[str, float]] = {}
    if len(after) < 4:
        return out
    k = max(1, len(after) // 5)
    for name in after[0]["rss_mb"]:
        first = [s["rss_mb"][name] for s in after[:k] if name in s["rss_mb"]]
        last = [s["rss_mb"][name] for s in after[-k:] if name in s["rss_mb"]]
        if first and last:
            a, b = statistics.median(first), statistics.median(last)
            out[name] = {"first_mb": a, "last_mb": b, "growth_pct": (b - a) / a * 100 if a else 0}
    return out


def plot(samples: list[dict[str, Any]], warmup_s: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(10, 12), sharex=True)
    t = [s["t"] for s in samples]
    panels = [("rss_mb", "RSS (MB)"), ("cpu_pct", "CPU (% of a core)"), ("lag", "lag (records)")]
    for ax, (key, label) in zip(axes, panels, strict=False):
        names = sorted({n for s in samples for n in s[key]})
        for name in names:
            ax.plot(t, [s[key].get(name) for s in samples], label=name)
        ax.set_ylabel(label)
        ax.legend(fontsize="small", loc="upper left")
    ax = axes[3]
    ax.plot(t, [s["latency_p50_s"] for s in samples], label="1 s bars p50")
    ax.plot(t, [s["latency_p99_s"] for s in samples], label="1 s bars p99")
    ax.set_ylabel("event time -> row (s)")
    ax.legend(fontsize="small", loc="upper left")
    ax.set_xlabel("seconds since the producer started")
    for ax in axes:
        ax.axvline(warmup_s, color="grey", linestyle=":")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def soak(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.seconds or args.minutes * 60
    warmup = args.warmup if args.warmup is not None else seconds / 5
    cfg = PipelineConfig(rate=args.rate, seconds=seconds, observe=False)
    folder = make_folder("marketpipe-soak-")
    samples: list[dict[str, Any]] = []
    with Pipeline(folder, cfg) as p:
        p.start()
        started = time.monotonic()
        resources = ResourceSampler()
        producer = p.stages["producer"]
        while not producer.done:
            time.sleep(args.every)
            lag = p.lag_now()
            bars = row_latency(p.settings.postgres.conninfo(), within_s=args.every).get("bars_1s")
            p50, p99, rows = (bars.p50_s, bars.p99_s, bars.rows) if bars else (None, None, 0)
            usage = resources.sample(p.process_roots())
            samples.append({
                "t": round(time.monotonic() - started, 1),
                "rss_mb": {n: u.rss_mb for n, u in usage.items()},
                "cpu_pct": {n: u.cpu_pct for n, u in usage.items()},
                "lag": {n: v[1] for n, v in (lag.stages if lag else {}).items() if v},
                "latency_p50_s": p50, "latency_p99_s": p99, "latency_rows": rows,
            })  # fmt: skip
            log.info("%s", samples[-1])
        drained = p.drain(120)
        p.stop_stages()
        exits = {n: s.exit_codes for n, s in p.stages.items()}
        summaries = {n: s.current.stdout().strip() for n, s in p.stages.items() if s.current}
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "kind": "soak",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                 capture_output=True, text=True, check=False).stdout.strip(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "settings": {"rate": args.rate, "seconds": seconds, "warmup_s": warmup,
                     "every_s": args.every},
        "samples": samples,
        "growth_after_warmup": growth(samples, warmup),
        "drained_s": drained,
        "exit_codes": exits,
        "summaries": summaries,
        "folder": str(folder) if args.keep else None,
    }  # fmt: skip


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("marketpipe.librdkafka").setLevel(logging.CRITICAL)
    stop_on_sigterm()
    args = arguments()
    result = soak(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = args.out / f"soak-{stamp}.json"
    json_path.write_text(json.dumps(result, indent=1))
    png_path = json_path.with_suffix(".png")
    seconds = result["settings"]["seconds"]
    title = f"soak: {args.rate:g} ticks/s for {seconds / 60:g} min ({result['commit']})"
    plot(result["samples"], result["settings"]["warmup_s"], png_path, title)
    print(f"\nsoak: {seconds:g}s at {args.rate:g} ticks/s; exit codes {result['exit_codes']}")
    print(f"memory growth after {result['settings']['warmup_s']:g}s of warm-up "
          f"(target <= {GROWTH_TARGET_PCT:g}%):")  # fmt: skip
    for name, g in sorted(result["growth_after_warmup"].items()):
        mark = "" if g["growth_pct"] <= GROWTH_TARGET_PCT else "  OVER TARGET"
        print(f"  {name:<22}{g['first_mb']:>9.0f} MB -> {g['last_mb']:>6.0f} MB "
              f"{g['growth_pct']:>+7.1f}%{mark}")  # fmt: skip
    print(f"drained to lag 0 after the producer ended: {result['drained_s']}")
    print(f"wrote {json_path} and {png_path}")


if __name__ == "__main__":
    main()
