"""ReferenceWriter: buffers written on a thread of their own while the next ones fill."""

from __future__ import annotations

import numpy as np
import pytest

from vcfbert.io import h5store
from vcfbert.io.h5store import ReferenceWriter, read_reference


def _variants(n: int, n_haps: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    for i in range(n):
        haps = rng.integers(-1, 2, n_haps).astype(np.int8)  # -1: missing
        yield 100 + 7 * i, "A", "G", f"rs{i}", haps


def test_blocks_written_on_a_thread_give_the_store_of_the_variants(tmp_path, monkeypatch):
    """Many small buffers (several writes in flight one after the other), then the columns
    and the ploidy that wait for every write: the store holds every variant in order, with
    its frequency."""
    monkeypatch.setattr(h5store, "BLOCK", 7)
    variants = list(_variants(52, 10))
    path = tmp_path / "reference.h5"
    with ReferenceWriter(path, contig="X", samples=[f"s{i}" for i in range(5)]) as w:
        for v in variants:
            w.add(*v[:2], v[2], v[3], v[4])
            assert w.count == variants.index(v) + 1
        w.add_variant_column("variant_cm", lambda pos: pos / 1e6)
        region = np.zeros(52, bool)
        region[10:30] = True
        w.set_ploidy(region, np.array([True, False, False, True, False]))
    panel = read_reference(path)
    haps = np.stack([v[4] for v in variants], 1)
    np.testing.assert_array_equal(panel.haplotypes, haps)
    np.testing.assert_array_equal(panel.position, [v[0] for v in variants])
    assert panel.ids.tolist() == [v[3] for v in variants]
    called = haps >= 0
    af = (haps == 1).sum(0) / called.sum(0)
    keep = np.ones(10, bool)
    keep[[1, 7]] = False  # the males' second copies, in the haploid region
    af[10:30] = (haps[keep][:, 10:30] == 1).sum(0) / (haps[keep][:, 10:30] >= 0).sum(0)
    np.testing.assert_allclose(panel.af, af.astype(np.float32))


def test_a_failed_write_is_raised_and_leaves_no_store(tmp_path, monkeypatch):
    monkeypatch.setattr(h5store, "BLOCK", 4)
    real = ReferenceWriter._write
    calls = {"n": 0}

    def failing(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real(self, *args)

    monkeypatch.setattr(ReferenceWriter, "_write", failing)
    path = tmp_path / "reference.h5"
    with pytest.raises(OSError, match="No space left"):
        with ReferenceWriter(path, contig="1", samples=["a", "b"]) as w:
            for v in _variants(30, 4):
                w.add(v[0], v[1], v[2], v[3], v[4])
    assert not path.exists()
    assert not list(tmp_path.iterdir()), "a temporary file was left behind"


def test_variants_added_in_blocks_give_the_store_of_the_variants_added_one_by_one(
        tmp_path, monkeypatch):
    """add_block (the reference parser's path: a parser block of variants at once) writes
    the same store as add, variant by variant, whatever the blocks' sizes against BLOCK."""
    monkeypatch.setattr(h5store, "BLOCK", 7)
    variants = list(_variants(61, 10, seed=3))
    samples = [f"s{i}" for i in range(5)]
    with ReferenceWriter(tmp_path / "one.h5", contig="1", samples=samples) as w:
        for v in variants:
            w.add(*v)
    with ReferenceWriter(tmp_path / "blocks.h5", contig="1", samples=samples) as w:
        lo = 0
        for size in (1, 5, 13, 0, 2, 40):  # smaller and larger than BLOCK, one empty
            part = variants[lo:lo + size]
            w.add_block(np.array([v[0] for v in part], np.int64), [v[1] for v in part],
                        [v[2] for v in part], [v[3] for v in part],
                        np.stack([v[4] for v in part]) if part
                        else np.zeros((0, 10), np.int8))
            lo += size
            assert w.count == lo
    one, blocks = read_reference(tmp_path / "one.h5"), read_reference(tmp_path / "blocks.h5")
    np.testing.assert_array_equal(blocks.haplotypes, one.haplotypes)
    np.testing.assert_array_equal(blocks.position, one.position)
    assert blocks.alleles.tolist() == one.alleles.tolist()
    assert blocks.ids.tolist() == one.ids.tolist()
    np.testing.assert_array_equal(blocks.af, one.af)


def test_add_block_refuses_rows_of_another_width_or_count(tmp_path):
    with ReferenceWriter(tmp_path / "r.h5", contig="1", samples=["a", "b"]) as w:
        with pytest.raises(ValueError, match=r"\[m, 4\] haplotypes"):
            w.add_block(np.array([1]), ["A"], ["G"], ["."], np.zeros((1, 3), np.int8))
        with pytest.raises(ValueError, match="one position, REF, ALT, id and row"):
            w.add_block(np.array([1, 2]), ["A"], ["G"], ["."], np.zeros((2, 4), np.int8))
        w.add(5, "A", "G", ".", np.zeros(4, np.int8))
