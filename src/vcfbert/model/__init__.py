"""The imputation network and its configuration."""

from .config import ModelConfig
from .network import ALT, MASK, REF, VcfBert, WindowBatch

__all__ = ["ALT", "MASK", "REF", "ModelConfig", "VcfBert", "WindowBatch"]
