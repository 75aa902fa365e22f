"""abcmamba: Mamba state-space language models for music in ABC notation."""

__version__ = "0.1.0"
