"""abcmamba: Mamba state-space language models for music in ABC notation."""

import os
import re
import sys

from abcmamba._import_hook import install_when_imported

__version__ = "0.1.0"

# what a trained model folder records about its run (config, metrics, data)
RUN_FILE = "abcmamba_run.json"

# OWNER/NAME as the Hub spells repo ids: neither part starts with '.' or '-'
_HUB_ID = re.compile(r"(?![.-])[\w.-]+/(?![.-])[\w.-]+")


class UserError(Exception):
    """A problem the user can fix (missing file, bad flag value, empty corpus).

    Scripts and the `abcmamba` CLI print it as one line and exit with code 2.
    """


def is_hub_id(name: str) -> bool:
    """True when ``name`` is spelled like a Hugging Face Hub repo id (OWNER/NAME)."""
    return bool(_HUB_ID.fullmatch(name))


#: libgomp's spin before its threads sleep, set when abcmamba loads before torch.
OMP_SPIN = "10000"


def _shorten_omp_spin() -> None:
    """Let torch's OpenMP threads sleep soon after each op, unless the user chose.

    libgomp's threads spin 300,000 rounds (several ms on our CPUs) after every
    parallel op. The numba scan kernels run between torch's GEMMs on their own
    threads, which then share the cores with spinning ones: Mamba training on
    2 cores was 6-18% slower (benchmarks/RESULTS.md). libgomp reads the
    setting once, when torch loads it, so this only works before ``import torch``.
    """
    if "torch" in sys.modules:
        return
    if "OMP_WAIT_POLICY" not in os.environ:  # the user's policy wins
        os.environ.setdefault("GOMP_SPINCOUNT", OMP_SPIN)


_shorten_omp_spin()

# model.generate / pipeline on a CPU get the fused Mamba decode step
install_when_imported()
