"""Generation defaults shared by `abcmamba generate`, evaluate, train.py and push_to_hub."""

DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 0
DEFAULT_MAX_NEW_TOKENS = 1024
DEFAULT_BATCH_SIZE = 8
DEFAULT_RETRIES = 3
