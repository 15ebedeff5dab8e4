"""FAISS shards: write, read back, search equals brute force; checksums catch corruption."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vcfbert.errors import IntegrityError
from vcfbert.index import KeySearcher, build_index, load_index, verify_shard
from vcfbert.integrity import missing_shards, purge_corrupted_shards


def _keys(n=300, d=16, seed=0):
    rng = np.random.default_rng(seed)
    k = rng.normal(size=(n, d)).astype(np.float32)
    return k / np.linalg.norm(k, axis=1, keepdims=True)


def test_write_read_search_equals_brute_force(tmp_path):
    keys = _keys()
    side = build_index(keys, tmp_path / "w0000.faiss", meta={"epoch": "0"})
    assert side["count"] == 300 and side["dimension"] == 16
    assert side["bytes_per_haplotype_window"] <= 1024
    index, meta = load_index(tmp_path / "w0000.faiss", expect_count=300, expect_dim=16)
    q = _keys(20, seed=1)
    got = KeySearcher(index).search(q, 10)
    brute = np.argsort(-(q @ keys.T), axis=1, kind="stable")[:, :10]
    assert np.array_equal(np.sort(got, 1), np.sort(brute, 1))


def test_search_excludes_own_sample(tmp_path):
    keys = _keys(50)
    build_index(keys, tmp_path / "x.faiss", meta={})
    index, _ = load_index(tmp_path / "x.faiss")
    q = keys[[4, 11]]
    got = KeySearcher(index).search(q, 5, exclude=np.array([[4, 5], [10, 11]]))
    assert 4 not in got[0] and 5 not in got[0]
    assert 10 not in got[1] and 11 not in got[1]
    assert (got >= 0).all()


def test_search_never_returns_second_copies(tmp_path):
    """chrX: a male's allele is stored on both of his haplotypes; the second copy is never
    retrieved, and the searcher still fills k with the next best."""
    keys = _keys(50)
    keys[7] = keys[6]  # sample 3 is male: two identical keys
    build_index(keys, tmp_path / "x.faiss", meta={})
    index, _ = load_index(tmp_path / "x.faiss")
    never = np.array([7, 21])
    got, scores = KeySearcher(index, never=never).search_scored(keys[[6, 20]], 10)
    assert 6 in got[0] and 7 not in got[0] and 21 not in got[1]
    assert (got >= 0).all() and np.isfinite(scores).all()
    brute = np.argsort(-(keys[[6]] @ np.delete(keys, never, 0).T), axis=1)[0, :10]
    assert sorted(got[0]) == sorted(np.delete(np.arange(50), never)[brute])


def test_corrupted_shard_detected_and_purged(tmp_path):
    root = tmp_path / "epochs"
    shard = root / "0" / "index" / "20" / "w0000.faiss"
    shard.parent.mkdir(parents=True)
    build_index(_keys(), shard, meta={})
    assert verify_shard(shard) is None
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert "checksum mismatch" in verify_shard(shard)
    with pytest.raises(IntegrityError, match="checksum mismatch.*re-run"):
        load_index(shard)
    assert purge_corrupted_shards(root) == [shard]
    assert not shard.exists() and not shard.with_suffix(".json").exists()


def test_shard_without_sidecar_is_unfinished(tmp_path):
    shard = tmp_path / "w.faiss"
    build_index(_keys(), shard, meta={})
    shard.with_suffix(".json").unlink()
    assert "sidecar missing" in verify_shard(shard)


def test_count_mismatch_refused(tmp_path):
    build_index(_keys(30), tmp_path / "w.faiss", meta={})
    with pytest.raises(IntegrityError, match="30 haplotypes indexed, the reference has 40"):
        load_index(tmp_path / "w.faiss", expect_count=40)
    meta = json.loads((tmp_path / "w.json").read_text())
    assert meta["format"] == "vcfbert-index"


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_missing_shards_only_where_the_consumer_exists(tmp_path):
    r = tmp_path / "results"
    (r / "ingest").mkdir(parents=True)
    (r / "ingest/chromosomes.tsv").write_text("contig\twildcard\nchr20\tchr20\n")
    (r / "windows").mkdir()
    (r / "windows/chr20.tsv").write_text("window_id\tstart\nw0000\t0\nw0001\t1\nw0002\t2\n")
    for epoch in ("0", "1"):
        for w in ("w0000", "w0001", "w0002"):
            for ext in ("faiss", "json"):
                _touch(r / f"epochs/{epoch}/index/chr20/{w}.{ext}")
    for c in ("c0000", "c0001"):  # 3 windows, 2 per job: chunks c0000 (2) and c0001 (1)
        for ext in ("vcf.gz", "json"):
            _touch(r / f"impute/chr20/{c}.{ext}")
    epochs = ["0", "1"]
    assert missing_shards(r, epochs, 2) == []  # nothing consumed yet: nothing to repair
    (r / "epochs/0/index/chr20/w0001.faiss").unlink()
    (r / "epochs/1/index/chr20/w0000.json").unlink()
    (r / "impute/chr20/c0001.vcf.gz").unlink()
    # epoch 0 trained, epoch 1 not yet (its missing sidecar is the normal DAG's business)
    _touch(r / "train/epoch_0/model.pt")
    assert missing_shards(r, epochs, 2) == [r / "epochs/0/index/chr20/w0001.faiss"]
    _touch(r / "train/epoch_1/model.pt")
    _touch(r / "imputed/chr20.vcf.gz")
    assert missing_shards(r, epochs, 2) == [r / "epochs/0/index/chr20/w0001.faiss",
                                            r / "epochs/1/index/chr20/w0000.faiss",
                                            r / "impute/chr20/c0001.vcf.gz"]
    # a frozen index uses epoch 0's shards only
    assert missing_shards(r, ["0"], 2) == [r / "epochs/0/index/chr20/w0001.faiss",
                                           r / "impute/chr20/c0001.vcf.gz"]
    # with 3 windows per job the one chunk c0000 exists: nothing imputed is missing
    assert missing_shards(r, ["0"], 3) == [r / "epochs/0/index/chr20/w0001.faiss"]
    assert missing_shards(tmp_path / "nothing", epochs, 2) == []


def test_intact_shards_are_hashed_once(tmp_path, monkeypatch):
    """The start-of-run check reads a shard again only when its stamp changed (a shard
    rewritten in place, its sidecar replaced): the verified stamps are kept beside the
    shards, a dry run records nothing, and a job loading a shard still checks its checksum."""
    import os

    from vcfbert import integrity

    root = tmp_path / "epochs"
    shards = [root / "0" / "index" / "20" / f"w000{i}.faiss" for i in range(3)]
    for i, shard in enumerate(shards):
        shard.parent.mkdir(parents=True, exist_ok=True)
        build_index(_keys(seed=i), shard, meta={})
    read = []
    real = integrity.verify_shard
    monkeypatch.setattr(integrity, "verify_shard", lambda p: read.append(p.name) or real(p))
    assert purge_corrupted_shards(root, dry_run=True) == []
    assert len(read) == 3 and not (root / integrity.VERIFIED_STAMPS).exists()
    read.clear()
    assert purge_corrupted_shards(root) == [] and len(read) == 3
    read.clear()
    assert purge_corrupted_shards(root) == [] and read == []  # nothing read again
    # rewritten in place (same size, a new modification time): read again, and purged
    data = bytearray(shards[1].read_bytes())
    data[100] ^= 0xFF
    shards[1].write_bytes(bytes(data))
    assert purge_corrupted_shards(root) == [shards[1]] and read == ["w0001.faiss"]
    read.clear()
    # damaged with its old stamp put back: the start trusts it, the job loading it does not
    data = bytearray(shards[2].read_bytes())
    data[100] ^= 0xFF
    stat = shards[2].stat()
    shards[2].write_bytes(bytes(data))
    os.utime(shards[2], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert purge_corrupted_shards(root) == [] and read == []
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        load_index(shards[2])
    # an unreadable record of stamps: every shard read again
    (root / integrity.VERIFIED_STAMPS).write_text("{not json")
    assert purge_corrupted_shards(root) == [shards[2]] and sorted(read) == ["w0000.faiss",
                                                                             "w0002.faiss"]
