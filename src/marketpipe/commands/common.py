"""What every command module shares: exit codes and the one instant parser for options."""

from __future__ import annotations

import argparse

#: 0 success; 1 the run finished but lost or failed records; 2 bad usage or settings;
#: 3 a dependency (broker, database, object store, local service) is unavailable.
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_UNAVAILABLE = 0, 1, 2, 3


def instant(text: str) -> int:
    """An instant option's value as epoch µs, through the one parser every command uses."""
    from marketpipe.ingest.timeparse import INSTANT_SYNTAX, parse_instant

    try:
        return parse_instant(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an instant: {text!r}; want {INSTANT_SYNTAX}"
        ) from None
