"""Run the whole pipeline on a local stack of its own, inject faults, and account for every
tick afterwards: the fault tests, ``make soak`` and the end-to-end benchmark share it."""

from benchmarks.pipeline.accounting import Accounting, Ledger, account
from benchmarks.pipeline.run import (
    Fault,
    Pipeline,
    PipelineConfig,
    Report,
    make_folder,
    stop_on_sigterm,
)
from benchmarks.pipeline.stages import Stage

__all__ = [
    "Accounting",
    "Fault",
    "Ledger",
    "Pipeline",
    "PipelineConfig",
    "Report",
    "Stage",
    "account",
    "make_folder",
    "stop_on_sigterm",
]
