"""Sources that publish ticks to ticks.raw: synthetic producer (and, later, replay and live)."""
