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

# caps on the windows an epoch covers (0: every window), added after a release: left out
# where the cap does not bind (0, or at least the run's number of windows), where the epoch
# covers every window as before the key existed (the job's TrainConfig default, 0)
TRAIN_WINDOW_CAPS: tuple[str, ...] = ("val_max_windows",)


def train_epoch_params(train: dict[str, Any], n_windows: int | None = None) -> dict[str, Any]:
    """The config's ``train`` section as ``train_epoch``'s params: the keys of
    :data:`TRAIN_KEYS_OMITTED_AT_DEFAULT` left out where they hold their default, and those of
    :data:`TRAIN_WINDOW_CAPS` where they do not bind on a run of ``n_windows`` windows (all
    chromosomes; None: unknown, a positive cap is kept). The job's ``TrainConfig`` then takes
    a default that trains the same way."""
    out = {key: value for key, value in train.items()
           if not (key in TRAIN_KEYS_OMITTED_AT_DEFAULT
                   and value == TRAIN_KEYS_OMITTED_AT_DEFAULT[key])}
    for key in TRAIN_WINDOW_CAPS:
        if key in out and (int(out[key]) <= 0
                           or (n_windows is not None and int(out[key]) >= n_windows)):
            del out[key]
    return out
