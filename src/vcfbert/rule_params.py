"""What rules pass to their jobs as ``params``, where Snakemake compares them between runs.

Snakemake re-runs a job whose params changed (a rerun trigger, also in the SLURM profile). A
training key added to the configuration with a default that reproduces the previous behaviour
enters ``train_epoch``'s params only when a run sets it to something else, so that upgrading
vcfbert keeps a run's finished epochs (the profile leaves out the "code" trigger for the same
reason).
"""

from __future__ import annotations

from typing import Any

# keys added after a release, with the default under which training is what it was before
TRAIN_KEYS_OMITTED_AT_DEFAULT: dict[str, Any] = {"weight_average_decay": 0.0}


def train_epoch_params(train: dict[str, Any]) -> dict[str, Any]:
    """The config's ``train`` section as ``train_epoch``'s params: the keys of
    :data:`TRAIN_KEYS_OMITTED_AT_DEFAULT` left out where they hold their default (the job's
    ``TrainConfig`` then takes the same default)."""
    return {key: value for key, value in train.items()
            if not (key in TRAIN_KEYS_OMITTED_AT_DEFAULT
                    and value == TRAIN_KEYS_OMITTED_AT_DEFAULT[key])}
