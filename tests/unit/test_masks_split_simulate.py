"""Masks (seed = epoch), the train/validation split, the simulator, and no pickles anywhere."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vcfbert.errors import InputError
from vcfbert.masks import epoch_mask, read_mask, write_mask
from vcfbert.split import split_samples


def test_epoch_masks_are_reproducible_and_change_per_epoch(tmp_path):
    a = epoch_mask(1000, 3, "20", 0.1)
    assert np.array_equal(a, epoch_mask(1000, 3, "20", 0.1))
    assert not np.array_equal(a, epoch_mask(1000, 4, "20", 0.1))
    assert 0.85 < a.mean() < 0.95
    write_mask(tmp_path / "m.h5", a, version="3", contig="20", drop_fraction=0.1)
    back, version = read_mask(tmp_path / "m.h5")
    assert version == "3" and np.array_equal(back, a)


def test_split_is_stratified_and_reproducible():
    samples = [f"s{i}" for i in range(100)]
    pops = ["A"] * 80 + ["B"] * 20
    df = split_samples(samples, pops, val_fraction=0.1, seed=5)
    assert (df[df.population == "A"].split == "val").sum() == 8
    assert (df[df.population == "B"].split == "val").sum() == 2
    assert df.equals(split_samples(samples, pops, val_fraction=0.1, seed=5))
    with pytest.raises(InputError, match="val_fraction"):
        split_samples(samples, pops, val_fraction=1.5, seed=1)


def test_simulation_outputs(tiny_sim):
    paths, summary, _ = tiny_sim
    import cyvcf2

    ref = cyvcf2.VCF(paths.reference_vcf)
    tgt = cyvcf2.VCF(paths.target_vcf)
    assert len(ref.samples) == 60 and len(tgt.samples) == 12
    assert not set(ref.samples) & set(tgt.samples)
    n_tgt = sum(1 for _ in tgt)
    assert n_tgt == summary["array_sites"] and 50 <= n_tgt <= 110  # ~1 per 3 kb of 300 kb
    panel = pd.read_csv(paths.panel, sep="\t")
    assert set(panel.role) == {"reference", "target"}


def test_simulation_is_deterministic(tmp_path):
    from vcfbert.simulate import SimulatedPaths, SimulationConfig, simulate

    cfg = SimulationConfig(reference_samples={"CEU": 5}, target_samples={"CEU": 2},
                           length=50_000, seed=3)
    outs = []
    for tag in ("a", "b"):
        p = SimulatedPaths(*(str(tmp_path / f"{tag}_{n}") for n in
                             ("r.vcf.gz", "t.vcf.gz", "u.vcf.gz", "p.tsv")))
        simulate(cfg, p)
        outs.append(Path(p.reference_vcf).read_bytes())
    assert outs[0] == outs[1]


def _python_files():
    root = Path(__file__).resolve().parents[2]
    files = [p for d in ("src", "scripts") for p in (root / d).rglob("*.py")]
    return files + sorted((root / "bench").glob("*.py"))  # not bench/out (generated)


def test_no_pickle_anywhere():
    """No module imports pickle (or its relatives); numpy loads refuse pickles; torch loads
    use weights_only=True."""
    banned = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
    for path in _python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                names = set()
            assert not names & banned, f"{path}: imports {names & banned}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                kw = {k.arg: k.value for k in node.keywords}
                if node.func.attr == "load" and getattr(node.func.value, "id", "") == "torch":
                    val = kw.get("weights_only")
                    assert isinstance(val, ast.Constant) and val.value is True, \
                        f"{path}:{node.lineno}: torch.load without weights_only=True"
                if node.func.attr == "load" and getattr(node.func.value, "id", "") == "np":
                    val = kw.get("allow_pickle")
                    assert isinstance(val, ast.Constant) and val.value is False, \
                        f"{path}:{node.lineno}: np.load without allow_pickle=False"
                if node.func.attr in ("read_pickle", "to_pickle"):
                    raise AssertionError(f"{path}:{node.lineno}: pandas pickle I/O")
