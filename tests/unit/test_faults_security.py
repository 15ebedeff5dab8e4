"""Faults (failed writes) and security (no shell interpolation, no network at run time)."""

from __future__ import annotations

import errno
import re
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vcfbert.atomic import atomic_path, write_bytes_atomic
from vcfbert.errors import InputError
from vcfbert.runtime import run_step

ROOT = Path(__file__).resolve().parents[2]


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.h5"
    with pytest.raises(OSError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert list(tmp_path.iterdir()) == []


def test_full_disk_is_one_clear_line(tmp_path, capsys, monkeypatch):
    smk = SimpleNamespace(log=[str(tmp_path / "rule.log")], threads=1, rule="write_vcf")

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.vcf.gz"))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(SystemExit) as exc, run_step(smk):
        write_bytes_atomic(tmp_path / "x.vcf.gz", b"data")
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert re.match(r"vcfbert write_vcf: error: No space left on device writing .*x.vcf.gz: "
                    r"free disk space .*no partial output was kept", err[0])
    assert not (tmp_path / "x.vcf.gz").exists()


def test_user_error_is_one_line_not_a_traceback(tmp_path, capsys):
    smk = SimpleNamespace(log=[str(tmp_path / "rule.log")], threads=1, rule="parse_reference")
    with pytest.raises(SystemExit), run_step(smk):
        raise InputError("ref.vcf.gz: record 20:10 comes after position 20")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "record 20:10" in (tmp_path / "rule.log").read_text()


def test_rules_never_interpolate_config_into_shell():
    """Rules call Python scripts; none uses `shell:`/`run:` where config could be injected."""
    for smk in (ROOT / "rules").glob("*.smk"):
        text = smk.read_text()
        assert not re.search(r"^\s+(shell|run):", text, flags=re.M), smk


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("network access at run time")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_pipeline_steps_need_no_network(no_network, tmp_path):
    from vcfbert.ingest import parse_reference, parse_targets
    from vcfbert.simulate import SimulatedPaths, SimulationConfig, simulate

    p = SimulatedPaths(*(str(tmp_path / n) for n in ("r.vcf.gz", "t.vcf.gz", "u.vcf.gz",
                                                     "p.tsv")))
    simulate(SimulationConfig(reference_samples={"CEU": 10}, target_samples={"CEU": 2},
                              length=50_000, seed=2), p)
    parse_reference(p.reference_vcf, "20", tmp_path / "r.h5")
    parse_targets(p.target_vcf, tmp_path / "r.h5", "20", tmp_path / "t.h5", tmp_path / "a.tsv",
                  tmp_path / "b.tsv")
    assert np.load  # the remaining steps are covered by test_train_impute under the same rules
