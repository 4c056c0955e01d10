"""The Hugging Face Hub: push a finished output (``push``), the HF cache layout (``cache_layout``) and the
known offline copies of Hub models (``offline``, what ``nlp-transfer models`` lists and fetches).

``offline`` and ``cache_layout`` are leaves (errors only); ``push`` may import recipe, strategies, models
and outputs. Must not import training, compare or the API.
"""
