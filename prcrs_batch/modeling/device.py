"""Where and on how many threads torch runs: the device a setting names, torch's thread
count, and one thread per operation for work that runs many small operations in parallel."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def set_torch_threads(threads: int | None) -> None:
    """Set torch's CPU thread count, the one place the job does; None or 0 keeps torch's default.

    Scoring on the CPU runs this many chunks at once, each operation on one thread
    (scoring.workers): the networks' operations are too small to split over threads.
    Training reproduces bit for bit only with the thread count it was trained with.
    """
    if threads:
        torch.set_num_threads(int(threads))


@contextmanager
def one_thread_per_operation() -> Iterator[None]:
    """torch on one CPU thread inside the block, restored after it: the networks' operations
    are small, and split over threads they wait for each other, far more on a busy machine
    (the reference check of the 18 models, 2 rows each, took 18 s with 2 threads under load).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
