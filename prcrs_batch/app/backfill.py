"""A backfill in several processes, and the same shares for a Kubernetes Indexed Job.

A night reads the nights before it twice: its alert states compare it with the stored
scores of the `HISTORY_DAYS` before (alert_states), and its monitoring judges earlier
predictions once each, by the first night that reaches their target date, and measures
the windows from the outcomes stored before it (monitoring/watch.py). Judging is a
sequence by construction, so instead of making it order-independent the backfill runs
in two passes, and stores the same rows as one process would:

1. Scoring, in N processes: the range is cut into N contiguous shares (`shares`), each
   run in date order with the models loaded once, storing each night with its input
   drift (which reads only that night) but no outcomes or performance (`monitor=False`).
   Contiguous, not interleaved: only the first `HISTORY_DAYS` nights of a share read
   nights of another share, which may not be stored yet; interleaved, every night would.
2. Finishing, in one process, in date order: those first nights of every share but the
   first are run again (`rerun_nights`; every night before them is now stored), and
   every other night is monitored in its turn (pipeline.monitor_stored_night).

A Kubernetes Indexed Job runs pass 1 as one share per completion index (`run_share`),
and pass 2 (`finish_shares`) once after it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import date
from typing import Any

from prcrs_batch.app import pipeline
from prcrs_batch.app.pipeline import RunSummary
from prcrs_batch.errors import SafeMessage
from prcrs_batch.nightly.alert_states import HISTORY_DAYS
from prcrs_batch.results.migrations import require_usable
from prcrs_batch.settings import Settings

log = logging.getLogger(__name__)
WORKER_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"


class WorkerError(SafeMessage, RuntimeError):
    """A worker process ended without running its share (killed, out of memory)."""


def shares(dates: list[date], n: int) -> list[list[date]]:
    """`dates` cut into `n` contiguous shares in order, sizes differing by one at most.

    >>> [len(s) for s in shares([date(2026, 1, d) for d in range(1, 11)], 3)]
    [4, 3, 3]
    """
    size, extra = divmod(len(dates), n)
    bounds = [i * size + min(i, extra) for i in range(n + 1)]
    return [dates[bounds[i] : bounds[i + 1]] for i in range(n)]


def rerun_nights(dates: list[date], n: int) -> list[date]:
    """The nights pass 2 runs again: the first `HISTORY_DAYS` of every share but the first,
    whose alert states read another share's nights.

    >>> rerun_nights([date(2026, 1, d) for d in range(1, 21)], 2)[0]
    datetime.date(2026, 1, 11)
    """
    return [night for share in shares(dates, n)[1:] for night in share[:HISTORY_DAYS]]


def plan(
    settings: Settings,
    dates: list[date],
    *,
    workers: int = 1,
    shards: int | None = None,
    shard_index: int | None = None,
    finish: bool = False,
    send_email: bool = False,
) -> tuple[Iterator[RunSummary], list[date]]:
    """What `prcrs-batch backfill` runs, and the nights it shows: the whole range
    (`run_backfill`), share `shard_index` of `shards` (`run_share`), or the finishing pass
    (`finish_shares`: the nights run again). IndexError: a share past the last."""
    if shards is None:
        return run_backfill(settings, dates, workers=workers, send_email=send_email), dates
    if finish:
        return finish_shares(settings, dates, shards), rerun_nights(dates, shards)
    index = shard_index or 0
    shown = shares(dates, shards)[index]
    return run_share(settings, dates, index, shards), shown


def run_share(settings: Settings, dates: list[date], index: int, n: int) -> Iterator[RunSummary]:
    """Pass 1 for share `index` of `n` (a Job's completion index): its nights scored and
    stored without their monitoring, never emailed; `finish_shares` follows once all are done."""
    if not 0 <= index < n:
        raise ValueError(f"share index {index} is not in 0..{n - 1}")
    yield from pipeline.run_nights(
        settings, shares(dates, n)[index], send_email=False, monitor=False
    )


def finish_shares(
    settings: Settings, dates: list[date], n: int, *, send_email: bool = False
) -> Iterator[RunSummary]:
    """Pass 2 after the `n` shares of `dates` are stored: the nights `rerun_nights` names
    run again, every other one monitored, all in date order; yields the reruns."""
    again = set(rerun_nights(dates, n))
    stored = {night for night in dates if night not in again}
    yield from pipeline.run_nights(settings, dates, send_email=send_email, stored=stored)


def run_backfill(
    settings: Settings, dates: list[date], *, workers: int = 1, send_email: bool = False
) -> Iterator[RunSummary]:
    """Every night of `dates` in `workers` processes; yields one summary per night (its
    final one: a night run again in pass 2 is yielded then). One worker: one pass, each
    night scored and monitored in turn, in this process."""
    if workers <= 1 or len(dates) < 2:
        yield from pipeline.run_nights(settings, dates, send_email=send_email)
        return
    require_usable(settings)  # a set-up mistake stops here, before any process starts
    workers = min(workers, len(dates))
    again = set(rerun_nights(dates, workers))
    started = time.perf_counter()
    for summary in _scoring_pass(settings, dates, workers):
        if summary.as_of not in again:  # a rerun night's summary comes from pass 2
            yield summary
    scored = time.perf_counter()
    log.info("backfill pass 1: %d nights scored in %.0f s", len(dates), scored - started)
    yield from finish_shares(settings, dates, workers, send_email=send_email)
    log.info(
        "backfill pass 2: %d nights run again, %d monitored in %.0f s",
        len(again),
        len(dates) - len(again),
        time.perf_counter() - scored,
    )


def _scoring_pass(settings: Settings, dates: list[date], workers: int) -> Iterator[RunSummary]:
    """Pass 1: one spawned process per share, yielding summaries as the nights end."""
    threads = max(1, (settings.torch_threads or _cores()) // workers)  # cores shared out
    share_settings = settings.model_copy(update={"torch_threads": threads})
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch
    level = logging.getLogger("prcrs_batch").getEffectiveLevel()
    log.info("backfill: %d nights, %d processes, %d threads each", len(dates), workers, threads)
    with (
        context.Manager() as manager,
        ProcessPoolExecutor(
            workers, mp_context=context, initializer=_worker_logging, initargs=(level,)
        ) as pool,
    ):
        done: queue.Queue[RunSummary] = manager.Queue()
        futures = [
            pool.submit(_score_share, share_settings, share, done)
            for share in shares(dates, workers)
        ]
        left = len(dates)
        while left:
            try:
                summary = done.get(timeout=1.0)
            except queue.Empty:
                if all(f.done() for f in futures) and done.empty():
                    break  # a worker ended early: its error is raised below
                continue
            left -= 1
            yield summary
        for future in futures:
            _raise_failure(future, left)


def _score_share(settings: Settings, dates: list[date], done: queue.Queue[Any]) -> None:
    """In a worker process: a share's nights, each summary put on `done` as it ends."""
    for summary in pipeline.run_nights(settings, dates, send_email=False, monitor=False):
        done.put(summary)


def _raise_failure(future: Future[None], left: int) -> None:
    error = future.exception()
    if error is None:
        return
    if isinstance(error, SafeMessage):  # a set-up mistake: DatabaseSetupError
        raise error
    why = type(error).__name__
    raise WorkerError(f"a backfill worker ended early ({why}): {left} nights not run") from None


def _worker_logging(level: int) -> None:
    """A spawned worker starts with no logging: the parent's level, to standard error."""
    logging.basicConfig(level=level, format=WORKER_LOG_FORMAT)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
