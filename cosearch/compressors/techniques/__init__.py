"""One file per compression technique. Imported in genome order: a new technique goes last."""

# isort: off
from cosearch.compressors.techniques import distill_alpha, channel_ratio  # noqa: F401 - each import registers one
from cosearch.compressors.techniques import weight_bits, sparsity, activation_bits, rank_ratio, hash_ratio  # noqa: F401
# isort: on
