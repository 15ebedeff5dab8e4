"""An exponential moving average of a model's weights over its optimiser steps.

Training (``train.weight_average_decay`` > 0) updates the average after every optimiser step;
the epoch's checkpoint then holds the averaged weights (validated, selected, used for the next
epoch's keys and for imputation), and the raw weights training goes on from ride along in its
``extra`` (:data:`EXTRA_KEY`). The decay of update ``n`` is ``min(decay, (1 + n) / (10 + n))``,
so the first steps do not weigh the initial weights for long in a run of a few hundred steps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

EXTRA_KEY = "weight_average"  # checkpoint extra: {"train_model": state_dict, "updates": int}


class WeightAverage:
    """The running average of a model's state: floating-point tensors averaged, the others
    (integer buffers) copied from the model at each update."""

    def __init__(self, decay: float, average: dict[str, torch.Tensor], updates: int = 0) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.weight_average_decay must be in (0, 1) to average, "
                             f"not {decay}")
        self.decay = float(decay)
        self.average = {k: v.detach().clone() for k, v in average.items()}
        self.updates = int(updates)

    @classmethod
    def of_model(cls, model: torch.nn.Module, decay: float) -> WeightAverage:
        """An average that starts at the model's present weights."""
        return cls(decay, model.state_dict())

    def step_decay(self) -> float:
        """The decay the next update uses."""
        n = self.updates + 1
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards the model's weights (after an optimiser step)."""
        d = self.step_decay()
        for name, value in model.state_dict().items():
            avg = self.average[name]
            if avg.is_floating_point():
                avg.mul_(d).add_(value.detach().to(avg.device, avg.dtype), alpha=1.0 - d)
            else:
                avg.copy_(value)
        self.updates += 1

    def state(self) -> dict[str, Any]:
        """What a resume state stores: {"average": state_dict, "updates": int}."""
        return {"average": self.average, "updates": self.updates}

    @classmethod
    def from_state(cls, decay: float, state: dict[str, Any]) -> WeightAverage:
        """The average a resume state stored (:meth:`state`)."""
        return cls(decay, state["average"], int(state["updates"]))

    @contextlib.contextmanager
    def swapped_in(self, model: torch.nn.Module) -> Iterator[dict[str, torch.Tensor]]:
        """The model holds the averaged weights inside the block and its own after it;
        yields a copy of its own (the raw training weights)."""
        raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.average)
        try:
            yield raw
        finally:
            model.load_state_dict(raw)
