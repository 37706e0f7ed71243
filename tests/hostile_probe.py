"""Calls that only the hostile worker's own tests use."""

import numpy as np


def allocate(nbytes: int) -> int:
    """Touch `nbytes` of fresh memory (so it is resident) and return how many were touched."""
    block = np.ones(nbytes, dtype=np.uint8)
    return int(block.size)
