"""train_epoch's params: keys added with a neutral default stay out of them at that default."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from vcfbert.rule_params import (
    TRAIN_KEYS_OMITTED_AT_DEFAULT,
    TRAIN_WINDOW_CAPS,
    train_epoch_params,
)
from vcfbert.train import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def test_a_new_key_at_its_default_is_left_out_and_kept_when_set():
    train = {"lr": 0.001, "seed": 1, "weight_average_decay": 0.0}
    assert train_epoch_params(train) == {"lr": 0.001, "seed": 1}
    assert train_epoch_params({**train, "weight_average_decay": 0.95}) == {
        "lr": 0.001, "seed": 1, "weight_average_decay": 0.95}
    assert train_epoch_params({"lr": 0.001}) == {"lr": 0.001}


def test_the_left_out_defaults_are_the_schemas_and_the_jobs():
    """A key left out must mean the same to the job (TrainConfig's default) as the value the
    schema fills in, or a run would train with another setting than its config says."""
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    train_schema = schema["properties"]["train"]["properties"]
    job_defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())["train"]
    for key, default in TRAIN_KEYS_OMITTED_AT_DEFAULT.items():
        assert train_schema[key]["default"] == default, key
        assert job_defaults[key] == default, key
        assert config[key] == default, key


def test_a_window_cap_is_left_out_where_it_does_not_bind():
    """val_max_windows enters the params only when it leaves windows out: a run with no more
    windows than the cap (or the cap 0) keeps its params, and so its finished epochs."""
    train = {"lr": 0.001, "val_max_windows": 32}
    assert train_epoch_params(train, n_windows=6) == {"lr": 0.001}
    assert train_epoch_params(train, n_windows=32) == {"lr": 0.001}
    assert train_epoch_params(train, n_windows=82) == train
    assert train_epoch_params(train) == train  # windows unknown: kept
    assert train_epoch_params({**train, "val_max_windows": 0}, n_windows=82) == {"lr": 0.001}


def test_a_left_out_window_cap_means_every_window_to_the_job():
    """Left out, the job's TrainConfig default (0: every window) is what the cap does when it
    does not bind; the schema and the config give the cap that binds on long chromosomes."""
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    train_schema = schema["properties"]["train"]["properties"]
    job_defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())["train"]
    for key in TRAIN_WINDOW_CAPS:
        assert job_defaults[key] == 0, key
        assert train_schema[key]["default"] == config[key] > 0, key
