"""The torch device a step runs on (a module of its own: the imputation job picks its device
without importing the training code, and without importing torch when the answer is the CPU:
the job prepares its first window while torch is imported, see
:func:`vcfbert.impute.predict_cores`)."""

from __future__ import annotations

from .errors import InputError


def pick_device(requested: str = "auto", *, inference: bool = False) -> str:
    """The torch device for ``requested`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``).

    ``auto``: CUDA when a GPU is visible, else the CPU; for ``inference`` (imputation, the
    DR2 calibration) always the CPU, whose fused kernel (:mod:`vcfbert.model.copy_kernel`)
    imputed ``ooa_speed`` ~10x faster on 2 cores than the torch path did on an NVIDIA H200
    (docs/gpu.md); ``cuda`` still asks for the GPU. Only a CUDA question imports torch."""
    if requested == "cpu" or (requested == "auto" and inference):
        return "cpu"
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but no CUDA GPU is visible; set "
                         "`device: auto` or `cpu`")
    return requested
