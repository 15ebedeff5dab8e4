"""The command line's user errors: one line on stderr, exit status 1, no traceback."""

import re
import subprocess
import sys

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


def _run_program(body: str) -> subprocess.CompletedProcess:
    """``vcfbert.cli.run`` in a fresh interpreter, with ``main`` replaced by ``body``'s."""
    code = ("import sys, threading, vcfbert.cli as cli\n"
            "class TornDown:\n"  # a module global's finaliser runs in the interpreter's teardown
            "    def __del__(self):\n"
            "        sys.stderr.write('torn down\\n')\n"
            "kept = TornDown()\n"
            f"{body}\n"
            "cli.main = main\n"
            "cli.run()\n"
            "print('not reached', file=sys.stderr)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_the_program_flushes_its_output_and_skips_the_teardown_after_a_success():
    # a pipe is block-buffered: what main printed must still arrive whole
    res = _run_program("def main():\n    print('x' * 100_000)\n    return 0")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "x" * 100_000 + "\n"
    assert "not reached" not in res.stderr and "torn down" not in res.stderr


def test_the_program_returns_a_failure_s_status():
    res = _run_program("def main():\n    print('one line', file=sys.stderr)\n    return 1")
    assert res.returncode == 1 and res.stderr.startswith("one line\n")
    assert "torn down" in res.stderr  # a failure ends as Python does, teardown included


def test_the_program_waits_for_a_thread_that_is_still_running():
    # a non-daemon thread still running: the interpreter's own exit, which waits for it
    res = _run_program(
        "def main():\n"
        "    done = threading.Event()\n"
        "    def late():\n"
        "        done.wait(0.5)\n"
        "        print('thread finished', flush=True)\n"
        "    threading.Thread(target=late).start()\n"
        "    return 0")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "thread finished\n"
