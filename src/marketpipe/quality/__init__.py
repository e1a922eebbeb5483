"""The quality checker: the gate between ticks.raw and ticks.valid (invalid to ticks.dlq)."""
