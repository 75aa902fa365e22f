"""Keep a CPU training process's freed memory for its next step (glibc malloc).

Every training step frees and allocates again the same large tensors
(activations, their gradients, the loss's logits chunks). glibc serves blocks
over its mmap threshold (128 KiB, raised on the fly to at most 32 MiB) from
fresh mmaps and hands free memory at the top of a heap back to the kernel once
it exceeds the trim threshold, so each step faults in zeroed pages again: 20,000
to 40,000 minor page faults per step for the small preset at batch 8 x 512
(80-150 MB). With the thresholds raised once, before training, the same blocks
are reused and a step faults in nothing. Peak memory is the same: it is
reached in every step anyway. ``MALLOC_*_`` or ``GLIBC_TUNABLES`` set by the
user win.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping

# mallopt's parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: the largest mmap threshold glibc accepts on 64-bit (4 MiB x sizeof(long))
MMAP_THRESHOLD = 32 * 2**20
#: free memory a heap keeps at its top before giving it back
TRIM_THRESHOLD = 2**30

_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory(environ: Mapping[str, str] | None = None) -> str:
    """Raise glibc's mmap and trim thresholds; return what was done, for the log."""
    env = os.environ if environ is None else environ
    if any(name in env for name in _USER_SETTINGS) or "glibc.malloc" in env.get(
        "GLIBC_TUNABLES", ""
    ):
        return "left as set in the environment (MALLOC_*_ / GLIBC_TUNABLES)"
    if not sys.platform.startswith("linux"):
        return f"left as it is (no glibc on {sys.platform})"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        version = libc.gnu_get_libc_version
    except (OSError, AttributeError):
        return "left as it is (the C library is not glibc)"
    version.restype = ctypes.c_char_p
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    if not ok:
        return f"left as it is (glibc {version().decode()} refused mallopt)"
    return (
        f"freed blocks kept for the next step (glibc {version().decode()}: "
        f"mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold "
        f"{TRIM_THRESHOLD >> 20} MiB)"
    )
