"""Every lab, in the order of the pages they belong to."""

from .attention import ATTENTION, CAUSAL_MASK, REPEAT_KV
from .blocks import BLOCK, RMS_NORM
from .decoding import KV_STEP, MOE_ROUTE, TOP_P
from .positional import ROPE, SINUSOIDAL
from .quantize import QUANTIZE_BLOCK
from .text import BITS_PER_CHAR, BPE_MERGE

LABS = (BPE_MERGE, SINUSOIDAL, ROPE, ATTENTION, REPEAT_KV, RMS_NORM, BLOCK, CAUSAL_MASK, KV_STEP, TOP_P,
        MOE_ROUTE, QUANTIZE_BLOCK, BITS_PER_CHAR)
