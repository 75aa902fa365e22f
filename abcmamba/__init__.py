"""abcmamba: Mamba state-space language models for music in ABC notation."""

import re

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


# model.generate / pipeline on a CPU get the fused Mamba decode step
install_when_imported()
