"""The command line's user errors: one line on stderr, exit status 1, no traceback."""

import re

import pytest

from vcfbert.cli import main


@pytest.mark.parametrize(("text", "message"), [
    (None, "cannot read the simulation config .*missing.yaml: No such file or directory"),
    ("- a\n- b\n", "must be a mapping of keys, not a list"),
    ("a: [1\n", "is not valid YAML at line 2, column 1: expected ',' or ']'"),
])
def test_simulate_reports_a_bad_config_in_one_line(tmp_path, capsys, text, message):
    config = tmp_path / "missing.yaml"
    if text is not None:
        config.write_text(text)
    assert main(["simulate", "-o", str(tmp_path / "out"), "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("vcfbert simulate: error: ")
    assert re.search(message, err), err
