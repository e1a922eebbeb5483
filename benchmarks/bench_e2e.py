"""``make bench-e2e``: what the whole pipeline sustains with every stage running at once.

For each offered rate, on a local stack of its own (what ``marketpipe local up`` starts): the
synthetic producer -> ``ticks.raw`` -> quality checker -> ``ticks.valid`` -> features job ->
PostgreSQL and cold Parquet on S3, each stage the ``marketpipe`` command a user runs, all at
once on this machine. Then, on the same services, the naive baseline (``naive.py``) at the same
rate. Per rate and run:

- throughput of each stage after the warm-up (producer: raw topic growth; checker: its
  committed offsets; features and archive queries: their checkpoints' offsets), whether it kept
  up (at least 95% of what the producer wrote in the same time) and its lag when the producer
  stopped, in seconds of input;
- latency event time -> PostgreSQL row per output (p50/p95/p99 of rows whose newest tick came
  after the warm-up; see ``pipeline.latency``);
- CPU (% of one core, mean after the warm-up) and peak RSS of each stage and service.

The stages run on the product's defaults (``--set`` changes one): in particular the archive
query and the cold exports write every ``cold_trigger_s`` (10 s), so the archive's lag swings
by design, and the whole run counts until the checker and the features query have every tick.

Prints medians over the runs with the ratio to the naive baseline, and writes
``bench/results/e2e-<time>.json`` (machine, date, commit, settings, every figure of every run)
and a PNG of latency and throughput against offered rate.

    python -m benchmarks.bench_e2e                    # 1k, 5k, 10k, 25k, 50k, max; 3 runs
    python -m benchmarks.bench_e2e --rates 10000 --runs 1 --seconds 30
    python -m benchmarks.bench_e2e --smoke            # tiny: the code paths work, no figures
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.pipeline import Pipeline, PipelineConfig, make_folder, stop_on_sigterm
from benchmarks.pipeline.lag import LagSample
from benchmarks.pipeline.latency import row_latency
from benchmarks.pipeline.resources import ResourceSampler, Usage
from marketpipe.settings import FeaturesSettings

log = logging.getLogger("bench-e2e")
ROOT = Path(__file__).resolve().parent.parent
RATES = (1_000, 5_000, 10_000, 25_000, 50_000, 0)  # 0: as fast as the producer can
#: A stage kept up if it processed at least this share of what the producer wrote meanwhile.
KEPT_UP = 0.95
STAGES = ("checker", "features", "archive")
#: What the whole run waits for: the path to the PostgreSQL rows (the archive writes every
#: cold_trigger_s, so its lag is up to that long by design; its throughput is in the table).
DRAINED = ("checker", "features")
SMOKE = {"rates": [500], "runs": 1, "seconds": 8.0, "warmup": 0.0, "naive_seconds": 3.0}


def _setting(text: str) -> str:
    name, sep, _ = text.partition("=")
    if not sep or not name.startswith("MARKETPIPE_"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected MARKETPIPE_<SETTING>=<value>")
    return text


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates", type=lambda s: [int(float(r)) for r in s.split(",")], default=list(RATES),
        help="offered ticks/s, comma-separated; 0 = as fast as possible (default %(default)s)",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=3, help="runs per rate (medians)")
    parser.add_argument("--seconds", type=float, default=60.0, help="producer run per rate")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds left out of figures")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--drain", type=float, default=120.0, help="catch-up limit after the end")
    parser.add_argument(
        "--naive-seconds", type=float, default=None,
        help="naive baseline run per rate (default: --seconds; 0: skip it)",
    )  # fmt: skip
    parser.add_argument("--every", type=float, default=2.0, help="seconds between CPU/RSS samples")
    parser.add_argument(
        "--set", dest="env", action="append", default=[], metavar="MARKETPIPE_X=V", type=_setting,
        help="a setting for every stage, as its environment variable (repeatable), e.g. "
        "MARKETPIPE_FEATURES__TRIGGER_S=0.5",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--keep", action="store_true", help="keep each run's folder and logs")
    parser.add_argument("--smoke", action="store_true", help=f"tiny run: {SMOKE}")
    parser.add_argument(
        "--report", type=Path, metavar="JSON",
        help="no run: summarise an earlier result file again (table, summaries, plot)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    if args.naive_seconds is None:
        args.naive_seconds = args.seconds
    return args


def _naive() -> Any:
    """``naive.py`` is also a script run from ``benchmarks/`` (it imports ``harness`` as a
    top-level module): loaded the same way here."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module("naive")


class UsageSampler(threading.Thread):
    """CPU and RSS of every process tree of a run, every ``every_s`` seconds, in the
    background while the run goes on."""

    def __init__(self, p: Pipeline, every_s: float) -> None:
        super().__init__(name="usage", daemon=True)
        self.p, self.every_s = p, every_s
        self.samples: list[tuple[float, dict[str, Usage]]] = []
        self._halt = threading.Event()
        self._sampler = ResourceSampler()

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            self.samples.append((time.monotonic(), self._sampler.sample(self.p.process_roots())))

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def figures(self, since: float) -> dict[str, dict[str, float]]:
        """Per process: mean CPU % of a core after ``since`` and peak RSS over the run."""
        names = {n for _, got in self.samples for n in got}
        out = {}
        for name in sorted(names):
            cpu = [got[name].cpu_pct for t, got in self.samples if t >= since and name in got]
            rss = [got[name].rss_mb for _, got in self.samples if name in got]
            out[name] = {
                "cpu_pct": round(statistics.fmean(cpu), 1) if cpu else math.nan,
                "peak_rss_mb": max(rss),
            }
        return out


def _window(samples: list[LagSample], start: float, end: float) -> tuple[LagSample, LagSample]:
    """The first sample at or after ``start`` and the last at or before ``end`` that the broker
    answered (the whole run's ends if the window holds fewer than two)."""
    answered = [s for s in samples if s.raw_end is not None]
    inside = [s for s in answered if start <= s.t <= end]
    if len(inside) < 2:
        inside = [s for s in answered if s.t <= end] or answered
    return inside[0], inside[-1]


def throughput(samples: list[LagSample], start: float, end: float) -> dict[str, Any]:
    """Per stage (and the producer): ticks/s between ``start`` and ``end``, whether it kept
    up with the producer, and its lag at ``end`` in seconds of the producer's rate."""
    if len([s for s in samples if s.raw_end is not None]) < 2:
        return {}
    a, b = _window(samples, start, end)
    span = max(b.t - a.t, 1e-9)
    produced = ((b.raw_end or 0) - (a.raw_end or 0)) / span
    out: dict[str, Any] = {"producer": {"ticks_per_s": round(produced)}}
    for name in STAGES:
        before, after = a.stages.get(name), b.stages.get(name)
        if before is None or after is None:
            continue
        rate = (after[0] - before[0]) / span
        out[name] = {
            "ticks_per_s": round(rate),
            "kept_up": produced > 0 and rate >= KEPT_UP * produced,
            "lag_at_end_s": round(after[1] / produced, 1) if produced > 0 else None,
            "max_lag": max((s.lag(name) or 0) for s in samples),
        }
    return out


def run_once(rate: int, args: argparse.Namespace, run: int) -> dict[str, Any]:
    cfg = PipelineConfig(
        rate=float(rate), seconds=args.seconds, symbols=args.symbols, observe=False,
        seed=7 + run, extra_env=dict(e.split("=", 1) for e in args.env),
        cold_trigger_s=FeaturesSettings.model_fields["cold_trigger_s"].default,
    )  # fmt: skip
    folder = make_folder("marketpipe-e2e-")
    with Pipeline(folder, cfg) as p:
        usage = UsageSampler(p, args.every)
        p.start()
        started = time.monotonic()
        usage.start()
        warm = started + args.warmup
        since = datetime.fromtimestamp(p.first_event_us / 1e6 + 1 + args.warmup, UTC)
        producer = p.stages["producer"]
        producer.wait(args.seconds + 120)
        ended = time.monotonic()
        drained = p.drain(args.drain, DRAINED)
        usage.stop()
        acknowledged = p.acknowledged()
        p.stop_stages()
        latency = row_latency(p.settings.postgres.conninfo(), since=since)
        figures: dict[str, Any] = {
            "offered": rate,
            "acknowledged": acknowledged,
            "produced_per_s": round((acknowledged or 0) / max(ended - started, 1e-9)),
            "stages": throughput(p.samples, warm, ended),
            "drained_s": None if drained is None else round(drained, 1),
            "whole_run_per_s": whole_run(acknowledged, ended - started, drained),
            "whole_run_below_per_s": whole_run(acknowledged, ended - started, args.drain),
            "latency": {k: vars(v) for k, v in sorted(latency.items())},
            "processes": usage.figures(warm),
            "exit_codes": {n: s.exit_codes for n, s in p.stages.items()},
        }
        if args.naive_seconds > 0:
            naive = _naive().run_naive(
                p.settings, float(rate), seconds=args.naive_seconds, symbols=args.symbols,
                warmup_s=min(args.warmup, args.naive_seconds / 2), drain_s=15.0,
            )  # fmt: skip
            figures["naive"] = {k: v for k, v in vars(naive).items() if k != "processes"} | {
                "processes": {n: vars(u) for n, u in naive.processes.items()}
            }
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        figures["folder"] = str(folder)
    return figures


def whole_run(ticks: int | None, produced_s: float, drained_s: float | None) -> int | None:
    """Ticks over the time from the producer's start until every stage had them all (the JVM's
    start-up and the catch-up included): what the pipeline did end to end, or None if the
    stages never caught up within the drain limit."""
    if not ticks or drained_s is None:
        return None
    return round(ticks / (produced_s + drained_s))


def whole_run_range(runs: list[dict[str, Any]]) -> tuple[float, float] | None:
    """The median whole-run rate over ``runs`` as (at least, below), for runs some of which
    did not drain: such a run's rate is below its ticks over the producer's time and the drain
    limit (``whole_run_below_per_s``), and at least 0. None when every run drained."""
    if all(r["drained_s"] is not None for r in runs):
        return None
    done = [r["whole_run_per_s"] for r in runs if r["drained_s"] is not None]
    below = [r.get("whole_run_below_per_s") or 0 for r in runs if r["drained_s"] is None]
    return statistics.median(done + [0] * len(below)), statistics.median(done + below)


def _median(values: list[Any]) -> float | None:
    got = [v for v in values if isinstance(v, int | float) and not math.isnan(v)]
    return statistics.median(got) if got else None


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs of one rate."""

    def med(*path: str) -> float | None:
        values = []
        for r in runs:
            got: Any = r
            for key in path:
                got = got.get(key) if isinstance(got, dict) else None
            values.append(got)
        return _median(values)

    outputs = sorted({o for r in runs for o in r["latency"]})
    bounds = whole_run_range(runs)
    out: dict[str, Any] = {
        "offered": runs[0]["offered"],
        "runs": len(runs),
        "produced_per_s": med("produced_per_s"),
        # Only when every run drained; otherwise the range the median lies in.
        "whole_run_per_s": None if bounds is not None else med("whole_run_per_s"),
        "whole_run_range_per_s": bounds,
        "drained_runs": sum(r["drained_s"] is not None for r in runs),
        "stages": {
            s: {
                "ticks_per_s": med("stages", s, "ticks_per_s"),
                "kept_up_runs": sum(bool(r["stages"].get(s, {}).get("kept_up")) for r in runs),
                "lag_at_end_s": med("stages", s, "lag_at_end_s"),
            }
            for s in ("producer", *STAGES)
        },
        "latency": {
            o: {q: med("latency", o, q) for q in ("p50_s", "p95_s", "p99_s")} for o in outputs
        },
        "processes": {
            n: {k: med("processes", n, k) for k in ("cpu_pct", "peak_rss_mb")}
            for n in sorted({n for r in runs for n in r["processes"]})
        },
    }
    if all("naive" in r for r in runs):
        out["naive"] = {
            k: med("naive", k)
            for k in ("sustained_tps", "produced_tps", "latency_p50_s", "latency_p99_s")
        }
        out["naive"]["drained_runs"] = sum(bool(r["naive"]["drained"]) for r in runs)
    return out


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else format(value, spec) + unit


def table(summaries: list[dict[str, Any]]) -> list[str]:
    """The medians as a Markdown table (what docs/performance.md shows)."""
    head = (
        "| offered ticks/s | produced/s | checker/s | features/s | fell behind (runs) | "
        "end to end, whole run/s | 1 s bars p50 / p95 / p99 | 60 s bars p99 | "
        "window features p99 | naive sustained/s | naive p99 | ratio to naive |"
    )
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for s in summaries:
        st, lat = s["stages"], s["latency"]
        behind = [
            f"{n} in {s['runs'] - st[n]['kept_up_runs']} of {s['runs']}"
            for n in DRAINED
            if st[n]["ticks_per_s"] is not None and st[n]["kept_up_runs"] < s["runs"]
        ]
        bars1 = lat.get("bars_1s", {})
        naive = s.get("naive", {})
        e2e = s.get("whole_run_per_s")
        whole = f"{e2e:,.0f}" if e2e else "-"
        if s.get("whole_run_range_per_s"):
            low, high = s["whole_run_range_per_s"]
            e2e = low or None  # the ratio to naive from what is sure
            drained = f"{s['drained_runs']} of {s['runs']} runs drained within the limit"
            span = f"{low:,.0f}" if low == high else f"{low:,.0f} to {high:,.0f}"
            whole = f"{span if low else f'< {high:,.0f}'} ({drained})"
        ratio = (
            f"{e2e / naive['sustained_tps']:.1f}x" if e2e and naive.get("sustained_tps") else "-"
        )
        offered = f"{s['offered']:,}" if s["offered"] else "max"
        lines.append(
            f"| {offered} | {_fmt(st['producer']['ticks_per_s'], ',.0f')} | "
            f"{_fmt(st['checker']['ticks_per_s'], ',.0f')} | "
            f"{_fmt(st['features']['ticks_per_s'], ',.0f')} | "
            f"{'; '.join(behind) or 'none'} | {whole} | {_fmt(bars1.get('p50_s'), '.2f')} / "
            f"{_fmt(bars1.get('p95_s'), '.2f')} / {_fmt(bars1.get('p99_s'), '.2f')} s | "
            f"{_fmt(lat.get('bars_60s', {}).get('p99_s'), '.2f', ' s')} | "
            f"{_fmt(lat.get('window_features', {}).get('p99_s'), '.2f', ' s')} | "
            f"{_fmt(naive.get('sustained_tps'), ',.0f')} | "
            f"{_fmt(naive.get('latency_p99_s'), '.2f', ' s')} | {ratio} |"
        )
    return lines


def plot(summaries: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat_ax, tput_ax) = plt.subplots(1, 2, figsize=(13, 5))
    # "max" sits after the largest offered rate, at the rate the producer reached.
    xs = [s["offered"] or (s["stages"]["producer"]["ticks_per_s"] or 1) for s in summaries]
    for q, style in (("p50_s", "-o"), ("p99_s", "--o")):
        ys = [s["latency"].get("bars_1s", {}).get(q) for s in summaries]
        lat_ax.plot(xs, ys, style, label=f"marketpipe 1 s bars {q[:3]}")
        naive = [s.get("naive", {}).get(f"latency_{q}") for s in summaries]
        if any(v is not None for v in naive):
            lat_ax.plot(xs, naive, style, color="grey", label=f"naive {q[:3]}")
    lat_ax.set(
        xscale="log", yscale="log", xlabel="offered ticks/s",
        ylabel="event time -> PostgreSQL row (s)", title="latency after warm-up",
    )  # fmt: skip
    for name in ("producer", *STAGES):
        tput_ax.plot(xs, [s["stages"][name]["ticks_per_s"] for s in summaries], "-o", label=name)
    naive_tput = [s.get("naive", {}).get("sustained_tps") for s in summaries]
    if any(v is not None for v in naive_tput):
        tput_ax.plot(xs, naive_tput, "-o", color="grey", label="naive end to end")
    tput_ax.plot(xs, xs, ":", color="black", label="offered")
    tput_ax.set(xscale="log", yscale="log", xlabel="offered ticks/s", ylabel="ticks/s",
                title="throughput per stage after warm-up")  # fmt: skip
    for ax in (lat_ax, tput_ax):
        ax.legend(fontsize="small")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("marketpipe.librdkafka").setLevel(logging.CRITICAL)
    stop_on_sigterm()
    args = arguments(argv)
    if args.report is not None:
        return report_again(args.report)
    at_start = git_commit()
    by_rate: dict[int, list[dict[str, Any]]] = {r: [] for r in args.rates}
    # Runs interleave the rates (1k, 5k, ..., 1k, 5k, ...) so that slow drift of the machine
    # spreads over every rate instead of landing on one.
    for run in range(args.runs):
        for rate in args.rates:
            log.info("run %d/%d at %s ticks/s", run + 1, args.runs, rate or "max")
            by_rate[rate].append(run_once(rate, args, run))
            log.info("%s", json.dumps(by_rate[rate][-1]["stages"]))
    summaries = [summary(runs) for runs in by_rate.values()]
    commit = git_commit()
    result = {
        "kind": "e2e",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "commit_at_start": at_start,  # the stages run the working tree: did it change?
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"kept_up": KEPT_UP},
        "summaries": summaries,
        "runs": by_rate,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = args.out / f"e2e-{stamp}.json"
    json_path.write_text(json.dumps(result, indent=1, default=str))
    png_path = json_path.with_suffix(".png")
    plot(summaries, png_path, f"marketpipe end to end, {os.cpu_count()} cores ({commit})")
    print(f"\nend to end, medians of {args.runs} run(s) of {args.seconds:g} s per rate, "
          f"first {args.warmup:g} s not counted; {args.symbols} symbols")  # fmt: skip
    print("\n".join(table(summaries)))
    print(f"\nwrote {json_path} and {png_path}")
    return 0


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True, check=False)  # fmt: skip
    return done.stdout.strip()


def report_again(path: Path) -> int:
    """Summaries, table and plot of a saved result, figures added since filled in from what
    each run recorded."""
    result = json.loads(path.read_text())
    seconds = float(result["settings"]["seconds"])
    for runs in result["runs"].values():
        for r in runs:
            r.setdefault("whole_run_per_s", whole_run(r["acknowledged"], seconds, r["drained_s"]))
            below = whole_run(r["acknowledged"], seconds, result["settings"]["drain"])
            r.setdefault("whole_run_below_per_s", below)
    result["summaries"] = [summary(runs) for runs in result["runs"].values()]
    path.write_text(json.dumps(result, indent=1, default=str))
    title = f"marketpipe end to end, {result['machine']['cpus']} cores ({result['commit']})"
    plot(result["summaries"], path.with_suffix(".png"), title)
    print("\n".join(table(result["summaries"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
