"""A config value the schema refuses is described in one line: the key, what is wrong, what
the key accepts."""

from __future__ import annotations

import jsonschema
import pytest
from snakemake.exceptions import WorkflowError

from vcfbert.config_errors import describe_config_error

SCHEMA = {"type": "object", "additionalProperties": False, "properties": {
    "model": {"type": "object", "properties": {
        "attention_block": {"type": "integer", "minimum": 0, "not": {"const": 1},
                            "description": "0 (every slot) or at least 2"}}}}}


def _as_snakemake_raises(config: dict) -> WorkflowError:
    """The error Snakemake's ``validate`` raises: a WorkflowError raised while handling the
    jsonschema error, which it keeps only as text."""
    try:
        try:
            jsonschema.validate(config, SCHEMA)
        except jsonschema.ValidationError as e:
            raise WorkflowError("Error validating config file.", e)  # noqa: B904 - as Snakemake
    except WorkflowError as exc:
        return exc
    raise AssertionError("the config was valid")


def test_a_refused_value_names_its_key_and_what_it_accepts():
    line = describe_config_error(_as_snakemake_raises({"model": {"attention_block": 1}}))
    assert line is not None and "\n" not in line
    assert line.startswith("config model.attention_block: 1 should not be valid")
    assert "0 (every slot) or at least 2" in line


@pytest.mark.parametrize(("config", "start"), [
    ({"model": {"attention_block": "x"}}, "config model.attention_block: 'x' is not of type"),
    ({"epochs": 3}, "config (top level): Additional properties are not allowed"),
])
def test_other_refusals_keep_jsonschema_words(config, start):
    line = describe_config_error(_as_snakemake_raises(config))
    assert line is not None and line.startswith(start)


def test_other_errors_are_left_to_the_caller():
    assert describe_config_error(WorkflowError("some other problem")) is None
    assert describe_config_error(ValueError("x")) is None
