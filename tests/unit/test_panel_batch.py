"""`vcfbert impute`'s settings and the errors it reports before any work (the run itself:
tests/workflow/test_panel_batches.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vcfbert.cli import main
from vcfbert.errors import InputError
from vcfbert.panel_batch import BatchSettings, check_output, companion

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_workflow_configs():
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert BatchSettings.from_config(config) == BatchSettings()


def test_a_config_and_options_set_the_settings():
    s = BatchSettings.from_config({"impute": {"batch_size": 8, "windows_per_job": 2},
                                   "output": {"gp": False, "format_fields": ["HDS"]},
                                   "phasing": {"tool": "none"}, "device": "cpu"})
    assert (s.batch_size, s.windows_per_job, s.gp, s.format_fields, s.phasing_tool,
            s.device) == (8, 2, False, ("HDS",), "none", "cpu")
    assert s.match_states == BatchSettings().match_states  # a key not given keeps its default
    t = s.replace(batch_size=16, gp=None, match_states=0)  # None: an option not given
    assert (t.batch_size, t.gp, t.match_states, t.windows_per_job) == (16, False, 0, 2)


def test_companion_files_sit_beside_the_vcf():
    assert companion("out/batch.vcf.gz", ".qc.tsv") == "out/batch.qc.tsv"


def test_output_checks(tmp_path):
    with pytest.raises(InputError, match=r"out\.vcf: .* ending in \.vcf\.gz"):
        check_output(tmp_path / "out.vcf", force=False)
    with pytest.raises(InputError, match="the folder .*nowhere does not exist"):
        check_output(tmp_path / "nowhere" / "out.vcf.gz", force=False)
    existing = tmp_path / "out.vcf.gz"
    existing.write_bytes(b"")
    with pytest.raises(InputError, match="exists: give --force"):
        check_output(existing, force=False)
    check_output(existing, force=True)
    check_output(tmp_path / "new.vcf.gz", force=False)


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(["impute", *args])
    return code, capsys.readouterr().err


def targets_file(tmp_path) -> str:
    """A targets file that exists (what it holds is not read before the errors tested)."""
    path = tmp_path / "t.vcf"
    path.write_text("##fileformat=VCFv4.2\n")
    return str(path)


def test_a_missing_panel_is_one_line_and_no_output(tmp_path, capsys):
    out = tmp_path / "out.vcf.gz"
    code, err = run(capsys, "--panel", str(tmp_path / "panel"), "--targets",
                    targets_file(tmp_path), "-o", str(out))
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("vcfbert impute: error: ") and "directory not found" in err
    assert not out.exists() and not list(tmp_path.glob(".vcfbert-impute-*"))


def test_an_existing_output_is_refused_before_the_panel_is_read(tmp_path, capsys):
    out = tmp_path / "out.vcf.gz"
    out.write_bytes(b"keep")
    code, err = run(capsys, "--panel", str(tmp_path / "panel"), "--targets", "t.vcf.gz",
                    "-o", str(out))
    assert code == 1 and "exists: give --force" in err and out.read_bytes() == b"keep"


def test_a_bad_device_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["impute", "--panel", "p", "--targets", "t.vcf.gz", "-o", "o.vcf.gz",
              "--device", "gpu"])
    assert exc.value.code == 2
    assert "give auto, cpu, cuda or cuda:N" in capsys.readouterr().err


@pytest.mark.parametrize("threads", ["0", "-2", "two"])
def test_threads_must_be_a_positive_number(capsys, threads):
    with pytest.raises(SystemExit) as exc:
        main(["impute", "--panel", "p", "--targets", "t.vcf.gz", "-o", "o.vcf.gz",
              "--threads", threads])
    assert exc.value.code == 2
    assert "give a whole number of threads, 1 or more" in capsys.readouterr().err


def test_an_unreadable_workflow_config_is_one_line(tmp_path, capsys):
    code, err = run(capsys, "--panel", str(tmp_path), "--targets", targets_file(tmp_path),
                    "-o", str(tmp_path / "out.vcf.gz"), "--config", str(tmp_path / "no.yaml"))
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "cannot read the workflow config" in err and "config/config.yaml" in err


def test_a_missing_input_file_is_one_line(tmp_path, capsys):
    code, err = run(capsys, "--panel", str(tmp_path), "--targets", str(tmp_path / "no.vcf.gz"),
                    "-o", str(tmp_path / "out.vcf.gz"))
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("vcfbert impute: error: --targets ") and "no such file" in err
