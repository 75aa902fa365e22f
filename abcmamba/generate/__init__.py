"""Sample tunes from a model, conditioned on header fields (`abcmamba generate`).

- :mod:`~abcmamba.generate.conditions`: what is asked (fields, prompt);
- :mod:`~abcmamba.generate.constrained`: the ABC grammar as a logits processor
  (every tune valid, requested fields exact; the default);
- :mod:`~abcmamba.generate.unconstrained`: the model's own text (``--unconstrained``);
- :mod:`~abcmamba.generate.sampling`: the batched sampling loop and validation;
- :mod:`~abcmamba.generate.loading` and :mod:`~abcmamba.generate.cli`.
"""

from abcmamba.abc.header import HEADER_ORDER, ORDER
from abcmamba.generate.cli import FORMATS, add_arguments, run, write_formats
from abcmamba.generate.conditions import (
    FLAG_FIELDS,
    build_prompt,
    field_conditions,
    load_known_values,
)
from abcmamba.generate.constrained import AbcConstraint, AbcLogitsProcessor
from abcmamba.generate.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_RETRIES,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
)
from abcmamba.generate.loading import enable_cpu_fast_paths, load_model
from abcmamba.generate.sampling import (
    GeneratedTune,
    check_tune,
    generate_tunes,
    sample_batch,
)
from abcmamba.generate.unconstrained import HeaderGuard

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_RETRIES",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_TOP_K",
    "DEFAULT_TOP_P",
    "FLAG_FIELDS",
    "FORMATS",
    "HEADER_ORDER",
    "ORDER",
    "AbcConstraint",
    "AbcLogitsProcessor",
    "GeneratedTune",
    "HeaderGuard",
    "add_arguments",
    "build_prompt",
    "check_tune",
    "enable_cpu_fast_paths",
    "field_conditions",
    "generate_tunes",
    "load_known_values",
    "load_model",
    "run",
    "sample_batch",
    "write_formats",
]
