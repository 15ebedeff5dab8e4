"""The imputation network and its configuration.

The network's names load on first use (PEP 562), so that importing a torch-free submodule
(the copying kernel, the configuration) does not import torch: an imputation job prepares its
first window while torch is imported (:func:`vcfbert.impute.predict_cores`)."""

from typing import Any

from .config import ModelConfig

_NETWORK = ("ALT", "MASK", "REF", "VcfBert", "WindowBatch")


def __getattr__(name: str) -> Any:
    if name in _NETWORK:
        from . import network

        return getattr(network, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ALT", "MASK", "REF", "ModelConfig", "VcfBert", "WindowBatch"]
