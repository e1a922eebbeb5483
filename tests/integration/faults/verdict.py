"""What every fault test asserts about a run, with the whole report in the message."""

from __future__ import annotations

from benchmarks.pipeline import Report

#: A stage must have worked off the fault's backlog within this many seconds of it clearing.
RECOVERY_S = 30.0


SINKS_DIFFER = "the sinks do not match (validator, duplicate keys or archive)"


def problems(report: Report, crashed: str | None = None) -> list[str]:
    """Everything wrong with a run; ``crashed`` is the stage the test killed (the restart
    policy may restart it once), every other stage must have healed without exiting."""
    found = []
    acc = report.accounting
    if acc.lost:
        found.append(f"marketpipe lost {len(acc.lost)} ticks")
    if acc.duplicated:
        found.append(f"{len(acc.duplicated)} ticks twice in the valid topic")
    if acc.reprocessed:
        found.append(f"{len(acc.reprocessed)} ticks processed twice (valid and DLQ)")
    if report.sinks is not None and not report.sinks.ok:
        found.append(SINKS_DIFFER)
    for name, restarts in report.restarts.items():
        allowed = 1 if name == crashed else 0
        if restarts > allowed:
            codes = report.exit_codes[name]
            found.append(f"{name} exited and was restarted {restarts} times (exit codes {codes})")
    for name, codes in report.exit_codes.items():
        if codes and codes[-1] != 0:
            found.append(f"{name}'s last run exited {codes[-1]}, not 0")
    for fault, stages in report.recovery.items():
        slow = {s: v for s, v in stages.items() if v is None or v > RECOVERY_S}
        if slow:
            found.append(f"not caught up within {RECOVERY_S:g}s of {fault}: {slow}")
    if report.drain_s is None:
        found.append("never drained to lag 0 after the producer ended")
    return found


def lost_after_read(report: Report) -> int:
    """Ticks of ``ticks.valid`` the broker lost after the features job had read them, when
    that explains the run's only problem: the sinks differ from the valid topic as it is now.

    The local broker acknowledges before its log is durable, so a kill -9 loses the tail of
    ``ticks.valid`` too; the features job has read the lost ticks (they are in the archive, no
    longer in the topic), and its checkpoint is past their offsets, which the broker most
    likely hands out again to later ticks: those the job never reads. Kafka's semantics
    assume acknowledged records stay (Redpanda keeps them with ``acks=all``). 0 when anything
    else is wrong: a key twice, a tick archived twice, marketpipe's own loss or a slow stage."""
    sinks = report.sinks
    if sinks is None or not sinks.archived_not_in_valid:
        return 0
    if any(sinks.duplicate_keys.values()) or sinks.archived_twice:
        return 0
    return sinks.archived_not_in_valid if problems(report) == [SINKS_DIFFER] else 0


def broker_fault(report: Report) -> str | None:
    """Why a run's failure is the local broker's, not marketpipe's (None: it is not).

    - Every missing tick sits in ticks.valid's log behind a transaction that was open when the
      broker stopped. noida-db forgets its transaction coordinator state in a restart (the
      re-registered id gets a new producer id) and never times a transaction out, so nothing
      aborts it; Redpanda and Kafka abort it when the id registers again or after
      transaction.timeout.ms. On a cluster, deploy.yml's fault check is where this is shown.
    - The broker lost ticks of ticks.valid after the features job had read them
      (``lost_after_read``).
    """
    acc = report.accounting
    if acc.lost and acc.uncommitted == len(acc.lost):
        return f"local broker left {acc.uncommitted} ticks behind an unresolved transaction"
    lost = lost_after_read(report)
    if lost:
        return (
            f"local broker lost {lost} ticks of ticks.valid after the features job read them, "
            "and wrote later ticks at their offsets"
        )
    return None


def assert_healed(report: Report, crashed: str | None = None) -> None:
    text = "\n".join(report.lines())
    print(text)  # the figures, also for runs that pass (pytest -s, or -rP)
    found = problems(report, crashed)
    assert not found, "; ".join(found) + "\n" + text
