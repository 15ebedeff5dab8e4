"""Train once, impute many: a trained panel imputes new batches without any training job (slow)."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import TINY, merge, snakemake, vcf_records

pytestmark = pytest.mark.slow

# what a batch imputed with a trained panel may run: nothing that trains, encodes or indexes
PANEL_RULES = {"list_chromosomes", "phase_targets", "parse_targets",
               "refresh_mask", "impute_chunk", "write_vcf", "imputed_manifest",
               "evaluate",
               "plot_accuracy", "plot_training", "plot_qc", "all",
               "compile_kernels"}  # numba's cache, filled ahead (no training rule)


def rules_run(log: str) -> set[str]:
    return set(re.findall(r"^(?:local)?rule (\w+):", log, flags=re.M))


records = vcf_records


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny demo with two target batches: the panel and the first batch imputed."""
    work = tmp_path_factory.mktemp("train")
    cfg = merge(TINY, {"simulation": {"target_batches": 2}})
    snakemake(work, "--cores", "2", "trained_panel", "all", config=cfg)
    return work, cfg


def impute_with_panel(tmp_path, trained, batch: str, *extra: str, panel=None, check=True,
                      config: dict | None = None):
    work, cfg = trained
    cfg = merge(cfg, config or {})
    sim = work / "results" / "simulate"
    return snakemake(tmp_path, "--cores", "2", "--config",
                     f"trained_panel={panel or work / 'results' / 'trained_panel'}",
                     f"target_vcf={sim / f'targets{batch}.vcf.gz'}",
                     f"truth_vcf={sim / f'truth{batch}.vcf.gz'}", *extra, config=cfg,
                     check=check)


def test_second_batch_is_imputed_without_training(trained, tmp_path):
    res = impute_with_panel(tmp_path, trained, ".batch2",
                            config={"output": {"format_fields": ["HDS", "AP1", "AP2"]}})
    ran = rules_run(res.stdout + res.stderr)
    assert ran <= PANEL_RULES, ran - PANEL_RULES
    assert {"impute_chunk", "write_vcf", "evaluate"} <= ran
    acc = pd.read_csv(tmp_path / "results" / "evaluation" / "accuracy.tsv", sep="\t")
    overall = acc[(acc["group"] == "all") & (acc["maf_bin"] == "overall")]["r2"].iloc[0]
    assert overall > 0.8
    batch1 = set(records(trained[0] / "results" / "imputed" / "20.vcf.gz")[0].split()[9:])
    batch2 = set(records(tmp_path / "results" / "imputed" / "20.vcf.gz")[0].split()[9:])
    assert batch2 and not batch1 & batch2
    first = records(tmp_path / "results" / "imputed" / "20.vcf.gz")[1].split("\t")
    assert first[8] == "GT:DS:GP:HDS:AP1:AP2" and len(first[9].split(":")) == 6
    qc = pd.read_csv(tmp_path / "results" / "qc" / "summary.tsv", sep="\t")
    assert qc.loc[qc["metric"] == "panel_array_sites_missing", "value"].tolist() == [0]


def test_same_targets_give_the_training_runs_result(trained, tmp_path):
    impute_with_panel(tmp_path, trained, "")
    assert records(tmp_path / "results" / "imputed" / "20.vcf.gz") == \
        records(trained[0] / "results" / "imputed" / "20.vcf.gz")


def test_a_damaged_panel_stops_with_one_line(trained, tmp_path):
    panel = tmp_path / "panel"
    shutil.copytree(trained[0] / "results" / "trained_panel", panel)
    with open(panel / "model.pt", "r+b") as fh:
        fh.seek(200)
        fh.write(b"\0" * 16)
    (tmp_path / "run").mkdir()
    res = impute_with_panel(tmp_path / "run", trained, ".batch2", panel=panel, check=False)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "vcfbert list_chromosomes: error: " in out
    assert "model.pt: does not match the checksum in the panel's manifest" in out
    # the check is the first job that reads the panel: nothing after it started
    assert rules_run(out) & PANEL_RULES <= {"list_chromosomes", "compile_kernels"}


def vcfbert_impute(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vcfbert.cli", "impute", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_one_command_gives_the_workflows_vcf(trained, tmp_path):
    """`vcfbert impute` (one process, no Snakemake) writes the training run's records."""
    work, _ = trained
    out = tmp_path / "batch.vcf.gz"
    res = vcfbert_impute("--panel", work / "results" / "trained_panel", "--targets",
                         work / "results" / "simulate" / "targets.vcf.gz", "-o", out,
                         "--config", work / "test-config.yaml", "--threads", "2")
    assert res.returncode == 0, res.stderr[-4000:]
    assert records(out) == records(work / "results" / "imputed" / "20.vcf.gz")
    with gzip.open(out, "rt") as fh:
        header = [line for line in fh if line.startswith("##vcfbert_command")]
    assert header and "vcfbert impute --panel" in header[0]
    assert (tmp_path / "batch.vcf.gz.tbi").stat().st_size > 0
    qc = pd.read_csv(tmp_path / "batch.qc.tsv", sep="\t")
    assert qc.loc[qc["metric"] == "panel_array_sites_missing", "value"].tolist() == [0]
    assert "imputed 20" in (tmp_path / "batch.log").read_text()
    assert " INFO " not in res.stderr and "INFO vcfbert" not in res.stderr  # without -v
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".vcfbert-impute-")]
    again = vcfbert_impute("--panel", work / "results" / "trained_panel", "--targets",
                           work / "results" / "simulate" / "targets.vcf.gz", "-o", out)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"vcfbert impute: error: {out} exists: give --force to overwrite it, or another -o"]


def test_one_command_stops_on_a_damaged_panel(trained, tmp_path):
    panel = tmp_path / "panel"
    shutil.copytree(trained[0] / "results" / "trained_panel", panel)
    with open(panel / "20" / "windows.tsv", "a") as fh:
        fh.write("\n")
    res = vcfbert_impute("--panel", panel, "--targets",
                         trained[0] / "results" / "simulate" / "targets.batch2.vcf.gz",
                         "-o", tmp_path / "out.vcf.gz")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("vcfbert impute: error: ")
    assert "windows.tsv: does not match the checksum in the panel's manifest" in lines[-1]
    assert sum("does not match the checksum" in line for line in lines) == 1  # said once
    assert "does not match the checksum" in (tmp_path / "out.log").read_text()
    assert not (tmp_path / "out.vcf.gz").exists()


def test_a_panel_without_its_copy_of_the_reference_at_the_array(trained, tmp_path):
    """The panel ships the reference at its array's sites (the imputation reads each window's
    slots from it); a panel built before it existed, without the file, imputes the same
    records from the reference store."""
    work, _ = trained
    panel = work / "results" / "trained_panel"
    manifest = json.loads((panel / "manifest.json").read_text())
    assert "20/reference_at_array.h5" in manifest["files"]
    old = tmp_path / "old_panel"
    shutil.copytree(panel, old)
    (old / "20" / "reference_at_array.h5").unlink()
    del manifest["files"]["20/reference_at_array.h5"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "old.vcf.gz"
    res = vcfbert_impute("--panel", old, "--targets",
                         work / "results" / "simulate" / "targets.vcf.gz", "-o", out,
                         "--config", work / "test-config.yaml", "--threads", "2")
    assert res.returncode == 0, res.stderr[-4000:]
    assert records(out) == records(work / "results" / "imputed" / "20.vcf.gz")
