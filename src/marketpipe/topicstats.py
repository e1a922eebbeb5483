"""Per-symbol summary of a tick topic: what the demo prints after producing."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from marketpipe.contracts import ContractError, decode_tick

#: The header the quality checker puts its reason codes in (see quality/service.py).
REASONS_HEADER = "mp.reasons"
#: Message headers as confluent-kafka hands them out.
Headers = list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None


@dataclass
class SymbolStats:
    count: int = 0
    first_price: float = 0.0
    last_price: float = 0.0


@dataclass
class TopicSummary:
    """Counts every message: valid ticks by symbol, everything else as off-contract, and the
    quality checker's reasons where messages carry them (the DLQ)."""

    messages: int = 0
    off_contract: int = 0
    symbols: dict[str, SymbolStats] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, value: bytes | None, headers: Headers = None) -> None:
        self.messages += 1
        pairs = headers.items() if isinstance(headers, dict) else headers or ()
        for name, raw in pairs:
            if name == REASONS_HEADER and raw:
                text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
                self.reasons.update(text.split(","))
        try:
            tick = decode_tick(value or b"")
        except ContractError:
            self.off_contract += 1
            return
        stats = self.symbols.get(tick.symbol)
        if stats is None:
            stats = self.symbols[tick.symbol] = SymbolStats(first_price=tick.price)
        stats.count += 1
        stats.last_price = tick.price

    def as_dict(self, topic: str) -> dict[str, object]:
        """The ``--output json`` shape."""
        return {
            "topic": topic,
            "messages": self.messages,
            "contract_valid": self.messages - self.off_contract,
            "off_contract": self.off_contract,
            "reasons": dict(sorted(self.reasons.items())),
            "symbols": {
                name: {"ticks": s.count, "first_price": s.first_price, "last_price": s.last_price}
                for name, s in sorted(self.symbols.items())
            },
        }

    def lines(self, topic: str) -> list[str]:
        valid = self.messages - self.off_contract
        out = [
            f"{topic}: {self.messages} messages, {valid} contract-valid ticks, "
            f"{self.off_contract} off-contract, {len(self.symbols)} symbols",
            f"{'symbol':<12}{'ticks':>10}{'first price':>14}{'last price':>14}{'change':>9}",
        ]
        if self.reasons:
            out.insert(
                1, "reasons: " + ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items()))
            )
        for name in sorted(self.symbols):
            s = self.symbols[name]
            change = (s.last_price / s.first_price - 1.0) * 100 if s.first_price else 0.0
            out.append(
                f"{name:<12}{s.count:>10}{s.first_price:>14.6g}{s.last_price:>14.6g}{change:>8.3f}%"
            )
        return out
