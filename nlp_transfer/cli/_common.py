"""What several verbs share: the exit code for bad input and the help of ``--variant``."""

USAGE_ERROR = 2

VARIANT_HELP = "auto (default): the optimized variant when `nlp-transfer optimize` wrote one; fp32: the saved weights"
VARIANTS = ["auto", "fp32", "optimized"]
