"""A fixed number of torch intra-op threads for a block of work, restored afterwards.

On a CPU, torch splits reductions (convolutions, matrix products) across its intra-op threads,
so the thread count changes the last bits of results; fixing it makes numbers independent of
the machine's core count.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(count)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
