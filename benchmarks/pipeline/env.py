"""The environment of a ``marketpipe`` subprocess, pointing it at given settings."""

from __future__ import annotations

import os

from marketpipe.settings import Settings, flatten_env


def service_env(settings: Settings) -> dict[str, str]:
    """This process's environment without its MARKETPIPE_* variables, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("MARKETPIPE_")}
    env.update({k: v for k, v in flatten_env(settings, reveal_secrets=True).items() if v})
    return env
