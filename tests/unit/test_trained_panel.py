"""Trained panels: building, verifying, refusing the wrong one, and targets on the panel's array."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from vcfbert import trained_panel as tp
from vcfbert.calibration import Recalibration
from vcfbert.calibration import load as load_calibration
from vcfbert.calibration import save as save_calibration
from vcfbert.errors import InputError, IntegrityError
from vcfbert.ingest import parse_targets
from vcfbert.io.h5store import (
    read_reference,
    read_reference_at_sites,
    read_target_sites,
    read_targets,
)


def test_project_to_array_marks_missing_and_counts_extra_sites():
    haps = np.array([[0, 1, 1, 0], [1, -1, 0, 1]], np.int8)  # sites 2, 5, 7, 9
    got, counts = tp.project_to_array(haps, np.array([2, 5, 7, 9]), np.array([1, 5, 9]))
    assert got.tolist() == [[-1, 1, 0], [-1, -1, 1]]
    assert counts == {"dropped_not_on_panel_array": 2, "panel_array_sites_missing": 1}


def test_array_coverage_threshold_names_the_fix():
    counts = {"panel_array_sites_missing": 30}
    tp.check_array_coverage(counts, 150, max_missing=0.2, target_vcf="t.vcf", contig="20")
    with pytest.raises(InputError, match=r"lacks 30 of the trained panel's 100 array sites on "
                                         r"20 \(30%.*Build a trained panel for this array"):
        tp.check_array_coverage(counts, 100, max_missing=0.2, target_vcf="t.vcf", contig="20")


@pytest.fixture(scope="module")
def panel(tiny_stores, tmp_path_factory):
    """A trained panel built from the tiny stores with an untrained model."""
    from vcfbert.train import init_model

    d = tmp_path_factory.mktemp("panel")
    init_model({"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "d_key": 32}, d / "m.pt",
               seed=1)
    pd.DataFrame({"epoch": [0], "val_r2_mean_bins": [0.5]}).to_csv(d / "metrics.csv",
                                                                    index=False)
    save_calibration(Recalibration.identity(), d / "dr2_calibration.json")
    out = d / "trained_panel"
    manifest = tp.build(out_dir=out, contigs=["20"], labels=["20"],
                        reference_h5=[tiny_stores["ref"]], targets_h5=[tiny_stores["tgt"]],
                        windows_tsv=[tiny_stores["windows"]], model=str(d / "m.pt"),
                        key_encoder=str(d / "m.keys.npz"), metrics_csv=str(d / "metrics.csv"),
                        reference_vcf=tiny_stores["paths"].reference_vcf,
                        config={"epochs": 1, "model": {"d_model": 16}}, command="test",
                        dr2_calibration=str(d / "dr2_calibration.json"))
    return out, manifest


def test_build_writes_a_documented_verified_panel(panel, tiny_stores):
    out, manifest = panel
    assert set(manifest["files"]) == {"model.pt", "model.keys.npz", "metrics.csv",
                                      "dr2_calibration.json", "chromosomes.tsv",
                                      "20/reference.h5", "20/windows.tsv", "20/array_sites.tsv",
                                      "20/reference_at_array.h5"}
    assert tp.has_reference_at_array(manifest)
    assert load_calibration(out / "dr2_calibration.json").knots[0][1].tolist() == [0.0, 1.0]
    assert tp.verify(out)["array"]["sites"] == read_targets(tiny_stores["tgt"]).haplotypes.shape[1]
    assert manifest["contigs"][0]["length"] == 300_001  # from the reference's ##contig line
    assert (out / "README.md").read_text().startswith("# vcfbert trained panel")
    array = tp.read_array(out / "20" / "array_sites.tsv")
    assert np.array_equal(array, read_targets(tiny_stores["tgt"]).variant_ref_index)
    copy = out / "20" / "reference_at_array.h5"  # the reference at the array's sites
    assert np.array_equal(read_target_sites(copy), array)
    assert np.array_equal(read_reference_at_sites(copy, 0, array.size),
                          read_reference(tiny_stores["ref"]).haplotypes[:, array])
    assert not list(out.parent.glob(".trained_panel.tmp-*"))


def test_a_panel_without_dr2_calibration_says_so_and_a_damaged_one_is_refused(
        panel, tiny_stores, tmp_path, caplog):
    """Panels built before the calibration existed have none (their batches get an
    uncalibrated DR2, see rules/common.smk); a damaged file stops the build."""
    d = panel[0].parent
    args = dict(contigs=["20"], labels=["20"], reference_h5=[tiny_stores["ref"]],
                targets_h5=[tiny_stores["tgt"]], windows_tsv=[tiny_stores["windows"]],
                model=str(d / "m.pt"), key_encoder=str(d / "m.keys.npz"),
                metrics_csv=str(d / "metrics.csv"),
                reference_vcf=tiny_stores["paths"].reference_vcf, config={}, command="test")
    with caplog.at_level("WARNING"):
        manifest = tp.build(out_dir=tmp_path / "old", **args)
    assert "dr2_calibration.json" not in manifest["files"]
    assert "uncalibrated DR2" in caplog.text
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(IntegrityError, match="unreadable DR2 calibration"):
        tp.build(out_dir=tmp_path / "bad", dr2_calibration=str(tmp_path / "bad.json"), **args)
    assert not (tmp_path / "bad").exists()


def test_the_checkpoint_in_a_panel_has_no_optimiser_state(panel):
    from vcfbert.checkpoint import load_checkpoint

    state = load_checkpoint(panel[0] / "model.pt")
    assert state["optimizer"] is None and state["model"]


def test_a_damaged_or_missing_file_is_named(panel, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(panel[0], copy)
    keys = copy / "model.keys.npz"
    data = bytearray(keys.read_bytes())
    data[len(data) // 2] ^= 0xFF
    keys.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"copy/model.keys.npz: does not match the checksum"):
        tp.verify(copy)
    (copy / "20" / "windows.tsv").unlink()
    with pytest.raises(IntegrityError, match=r"20/windows.tsv: missing from the trained panel"):
        tp.verify(copy)


def test_a_batch_checks_its_own_chromosomes_files(panel, tmp_path):
    """verify(contigs=...) checks the chosen chromosomes' files and the shared ones only: a
    damaged file of another chromosome does not stop a batch that does not read it (another
    chromosome is added to a copy's manifest, its only file damaged)."""
    import json

    copy = tmp_path / "copy"
    shutil.copytree(panel[0], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "21").mkdir()
    (copy / "21" / "reference.h5").write_bytes(b"damaged")
    manifest["contigs"].append({**manifest["contigs"][0], "contig": "chr21", "wildcard": "21"})
    manifest["files"]["21/reference.h5"] = {"bytes": 7, "sha256": "0" * 64}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match=r"21/reference.h5: does not match the checksum"):
        tp.verify(copy)
    with pytest.raises(IntegrityError, match=r"21/reference.h5: does not match the checksum"):
        tp.verify(copy, contigs=["chr21"])
    assert tp.verify(copy, contigs=["20"])["contigs"][1]["contig"] == "chr21"
    keys = copy / "model.keys.npz"  # a shared file is checked for every batch
    data = bytearray(keys.read_bytes())
    data[len(data) // 2] ^= 0xFF
    keys.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"model.keys.npz: does not match the checksum"):
        tp.verify(copy, contigs=["20"])


def test_not_a_panel_and_other_versions_are_one_line(panel, tmp_path):
    with pytest.raises(InputError, match="trained panel directory not found"):
        tp.read_manifest(tmp_path / "nowhere")
    with pytest.raises(InputError, match="not a trained panel"):
        tp.read_manifest(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(panel[0], copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="format 99 is not 1"):
        tp.read_manifest(copy)


def _write_vcf_subset(src: str, dst, keep_line, *, contig_line=None) -> None:
    """Plain-text copy of a bgzipped VCF keeping the records ``keep_line(k, line)`` accepts."""
    with gzip.open(src, "rt") as fh:
        lines = fh.read().splitlines()
    header = [x for x in lines if x.startswith("#")]
    if contig_line is not None:
        header = [contig_line if x.startswith("##contig") else x for x in header]
    body = [x for x in lines if not x.startswith("#")]
    dst.write_text("\n".join(header + [x for k, x in enumerate(body) if keep_line(k, x)]) + "\n")


def test_targets_on_the_panel_array(panel, tiny_stores, tmp_path):
    out, _ = panel
    array = tp.read_array(out / "20" / "array_sites.tsv")
    paths = tiny_stores["paths"]
    # the truth file has every reference variant: the array is covered, the rest is ignored
    parse_targets(paths.truth_vcf, out / "20" / "reference.h5", "20", tmp_path / "t.h5",
                  tmp_path / "qs.tsv", tmp_path / "qn.tsv", array_index=array)
    qc = pd.read_csv(tmp_path / "qs.tsv", sep="\t").set_index("outcome")["count"]
    got = read_targets(tmp_path / "t.h5")
    assert np.array_equal(got.variant_ref_index, array)
    assert qc["panel_array_sites_missing"] == 0
    assert qc["dropped_not_on_panel_array"] == qc["matched"] - array.size
    assert qc["sites_used"] == array.size
    # a tenth of the array missing: imputed like missing genotypes, counted
    sub = tmp_path / "sub.vcf"
    _write_vcf_subset(paths.target_vcf, sub, lambda k, _: k % 10 != 3)
    parse_targets(sub, out / "20" / "reference.h5", "20", tmp_path / "s.h5",
                  tmp_path / "qs2.tsv", tmp_path / "qn2.tsv", array_index=array)
    got = read_targets(tmp_path / "s.h5")
    n_missing = len(range(3, array.size, 10))
    assert (~got.site_called).sum() == n_missing
    qc = pd.read_csv(tmp_path / "qs2.tsv", sep="\t").set_index("outcome")["count"]
    assert qc["panel_array_sites_missing"] == n_missing
    # half of it missing: refused
    half = tmp_path / "half.vcf"
    _write_vcf_subset(paths.target_vcf, half, lambda k, _: k % 2 == 0)
    with pytest.raises(InputError, match="Build a trained panel for this array"):
        parse_targets(half, out / "20" / "reference.h5", "20", tmp_path / "h.h5",
                      tmp_path / "qs3.tsv", tmp_path / "qn3.tsv", array_index=array)


def test_another_contig_set_or_build_or_reference_is_refused(panel, tiny_stores, tmp_path):
    out, manifest = panel
    paths = tiny_stores["paths"]
    rows = tp.panel_chromosomes(manifest, target_vcf=paths.target_vcf, panel_dir=str(out))
    assert rows == [{"contig": "20", "wildcard": "20"}]
    for contig, length, message in (
            ("21", 300001, "no contig in common with the trained panel.*another contig set"),
            ("chr20", 64444167, "length 64444167 in its header but 300001 in the trained "
                                "panel's reference.*another genome build")):
        other = tmp_path / f"{contig}.vcf"
        _write_vcf_subset(paths.target_vcf, other, lambda k, _: True,
                          contig_line=f"##contig=<ID={contig},length={length}>")
        other.write_text(other.read_text().replace("\n20\t", f"\n{contig}\t"))
        with pytest.raises(InputError, match=message):
            tp.panel_chromosomes(manifest, target_vcf=str(other), panel_dir=str(out))
    with pytest.raises(InputError, match="samples, but the trained panel .* was built from a "
                                         "reference of 60"):
        tp.panel_chromosomes(manifest, target_vcf=paths.target_vcf, panel_dir=str(out),
                             reference_vcf=paths.truth_vcf)
    tp.panel_chromosomes(manifest, target_vcf=paths.target_vcf, panel_dir=str(out),
                         reference_vcf=paths.reference_vcf)


def test_cli_checks_and_summarises_a_panel(panel, tmp_path, capsys):
    from vcfbert.cli import main

    assert main(["panel", str(panel[0])]) == 0
    out = capsys.readouterr().out
    assert "all match the manifest" in out and "20: " in out and "array sites" in out
    copy = tmp_path / "copy"
    shutil.copytree(panel[0], copy)
    (copy / "metrics.csv").write_text("epoch\n9\n")
    assert main(["panel", str(copy)]) == 1
    assert "metrics.csv: does not match the checksum" in capsys.readouterr().err
