"""Start the Streamlit server on ``app.py`` with the dashboard settings."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from marketpipe.settings import ConfigError, DashboardSettings

APP = Path(__file__).with_name("app.py")


def streamlit_argv(cfg: DashboardSettings, env_file: str | None = ".env") -> list[str]:
    """``python -m streamlit run app.py`` headless, on the configured address and port, with
    Streamlit's usage statistics off and no file watcher (nothing to reload in a pod)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", cfg.address, "--server.port", str(cfg.port),
        "--server.headless", "true", "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
        "--theme.base", "light",
        "--", "--env-file", env_file or "",
    ]  # fmt: skip


def check_port_free(cfg: DashboardSettings) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((cfg.address, cfg.port))
        except OSError as exc:
            raise ConfigError(
                f"cannot serve the dashboard on {cfg.address}:{cfg.port} ({exc.strerror}): "
                "another process has it; set --port or MARKETPIPE_DASHBOARD__PORT"
            ) from exc


def check_can_serve(cfg: DashboardSettings) -> None:
    """Streamlit and Altair installed, the port free: or one ConfigError saying what to do."""
    try:
        import altair  # noqa: F401
        import streamlit  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "the dashboard needs Streamlit and Altair: pip install 'marketpipe[dashboard]'"
        ) from exc
    check_port_free(cfg)


def exec_streamlit(cfg: DashboardSettings, env_file: str | None = ".env") -> None:
    """Replace this process with the Streamlit server (signals reach it directly)."""
    argv = streamlit_argv(cfg, env_file)
    os.execv(argv[0], argv)
