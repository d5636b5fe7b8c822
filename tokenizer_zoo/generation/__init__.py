"""Stage 2: generative models on a tokenizer's tokens (MaskGiT)."""

from tokenizer_zoo.generation.maskgit import MaskGiT, cosine_mask_ratio, masking_schedule
from tokenizer_zoo.generation.sub_tokens import SubTokenSplit

__all__ = ["MaskGiT", "SubTokenSplit", "cosine_mask_ratio", "masking_schedule"]
