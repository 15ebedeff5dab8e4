"""One line for a config value the schema refuses, instead of Snakemake's dump of the schema.

Snakemake's ``validate`` raises a ``WorkflowError`` that carries the jsonschema
``ValidationError`` and prints the whole sub-schema it failed against (a dozen lines for one
wrong number). :func:`describe_config_error` says which key, what jsonschema found wrong, and
what the key accepts (its ``description`` in ``workflow/schemas/config.schema.yaml``).
"""

from __future__ import annotations


def _validation_error(exc: BaseException | None) -> object | None:
    """The jsonschema ValidationError that ``exc`` is or was raised from (Snakemake's
    ``WorkflowError`` keeps only its text; the error itself is its ``__context__``), found by
    its attributes so that jsonschema need not be imported; None when there is none."""
    seen = 0
    while exc is not None and seen < 8:
        if all(hasattr(exc, a) for a in ("message", "absolute_path", "schema")):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def describe_config_error(exc: BaseException) -> str | None:
    """``config <key path>: <what is wrong> — <the key's description>; ...`` for a config
    validation error, or None when ``exc`` holds none (the caller re-raises it as it is)."""
    error = _validation_error(exc)
    if error is None:
        return None
    key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    line = f"config {key}: {error.message}"
    schema = error.schema if isinstance(error.schema, dict) else {}
    description = schema.get("description")
    if description:
        line += f" — {' '.join(str(description).split()).rstrip('.')}"
    return line + "; config/README.md lists every key"
