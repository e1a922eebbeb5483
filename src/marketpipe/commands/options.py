"""CLI options that set settings fields (see ``cliopts``), per command."""

from __future__ import annotations

from marketpipe.cliopts import SectionOptions
from marketpipe.settings import (
    DashboardSettings,
    FaultSettings,
    LiveSettings,
    ProducerSettings,
    QualitySettings,
    ReplaySettings,
)

# Options that set a settings field: flag, type, default, choices and help come from the field
# (None: the flag is the field's name, see cliopts.flag_of).
PRODUCE = SectionOptions(("producer",), ProducerSettings, {
    "symbols": None, "symbol_count": None, "tps": None, "jitter_ms": None, "duration_s": None,
    "count": None, "history_s": None, "history_tps": None, "seed": None, "start_price": None,
    "drift": None, "volatility": None, "tick_size": None, "spread_bps": None, "source": None,
    "resume": None,
})  # fmt: skip


FAULTS = SectionOptions(("producer", "faults"), FaultSettings, dict.fromkeys(
    ("malformed", "crossed", "duplicate", "out_of_order", "out_of_order_ms")
))  # fmt: skip


REPLAY = SectionOptions(("replay",), ReplaySettings, dict.fromkeys((
    "format", "preset", "columns", "header", "delimiter", "time_unit", "time_format", "tz",
    "price_scale", "symbol", "only_symbols", "speed", "start_at", "source",
)))  # fmt: skip


LIVE = SectionOptions(("live",), LiveSettings, {
    "mode": None, "symbols": None, "base_url": None, "poll_interval_s": "--interval",
    "duration_s": None, "source": None, "stream_url": None,
})  # fmt: skip


QUALITY = SectionOptions(("quality",), QualitySettings, {
    "delivery": None, "group_id": "--group", "instance_id": None,
})  # fmt: skip


DASHBOARD = SectionOptions(("dashboard",), DashboardSettings, dict.fromkeys(
    ("address", "port", "sink", "refresh_s", "prometheus_url")
))  # fmt: skip


#: Every section's options, for the test that walks them.
SECTION_OPTIONS = (PRODUCE, FAULTS, REPLAY, LIVE, QUALITY, DASHBOARD)
