"""Snakemake semantics users rely on (slow): kill -9 and resume to identical outputs; a deleted
or corrupted shard re-runs alone with what depends on it; more epochs train only the new ones."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import SNAKEFILE, TINY, merge, snakemake, write_config

pytestmark = pytest.mark.slow


def weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def vcf_text(path: Path) -> str:
    """The VCF's text without the command-line header (it names the run's own folder)."""
    lines = gzip.open(path, "rt").read().splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("##vcfbert_command="))


def jobs_run(stdout: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of the jobs a snakemake run executed."""
    out, rule = [], None
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith(("rule ", "localrule ", "checkpoint ", "localcheckpoint ")):
            rule = line.split()[1].rstrip(":")
            out.append((rule, ""))
        elif line.startswith("wildcards:") and out:
            out[-1] = (out[-1][0], line[len("wildcards:"):].strip())
    return out


def start_background(workdir: Path, config: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir),
           "--configfile", str(write_config(workdir, config)), "--cores", "2"]
    log = open(workdir / "background.log", "ab")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def background_log(workdir: Path) -> str:
    return (workdir / "background.log").read_text(errors="replace")[-3000:]


def kill_when(proc: subprocess.Popen, path_glob: str, root: Path, timeout: float = 300) -> bool:
    """SIGKILL the whole process group as soon as a file matching ``path_glob`` appears."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if list(root.glob(path_glob)):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    return False


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run of the tiny configuration."""
    d = tmp_path_factory.mktemp("uninterrupted")
    snakemake(d, "--cores", "2", config=TINY)
    return d


def test_kill_minus_nine_then_resume_gives_identical_outputs(reference_run, tmp_path):
    # first kill: while the first epoch's index shards are being written
    proc = start_background(tmp_path, TINY)
    assert kill_when(proc, "results/epochs/0/index/*/*.json", tmp_path), background_log(tmp_path)
    # a SIGKILLed Snakemake leaves its lock behind; it says so and asks for --unlock
    snakemake(tmp_path, "--unlock", config=TINY)
    # second kill: in the middle of epoch 0's training (after its first resume state)
    proc = start_background(tmp_path, TINY)
    assert kill_when(proc, "results/train/epoch_0.partial/resume.pt", tmp_path), \
        background_log(tmp_path)
    assert not (tmp_path / "results/train/epoch_0/model.pt").exists()
    locked = snakemake(tmp_path, "--cores", "2", config=TINY, check=False)
    assert locked.returncode != 0 and "--unlock" in locked.stderr
    snakemake(tmp_path, "--unlock", config=TINY)
    snakemake(tmp_path, "--cores", "2", config=TINY)
    log = (tmp_path / "logs/train/epoch_0.log").read_text()
    assert "resuming epoch 0 at batch" in log
    a, b = reference_run / "results", tmp_path / "results"
    for e in (0, 1):
        assert same_weights(a / f"train/epoch_{e}/model.pt", b / f"train/epoch_{e}/model.pt")
    assert vcf_text(a / "imputed/20.vcf.gz") == vcf_text(b / "imputed/20.vcf.gz")
    assert (a / "evaluation/accuracy.tsv").read_text() == (b / "evaluation/accuracy.tsv").read_text()


def _copy_run(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "-a", f"{src}/.", str(dst)], check=True)


def test_corrupted_shard_reruns_alone(reference_run, tmp_path):
    _copy_run(reference_run, tmp_path)
    shard = tmp_path / "results/epochs/1/index/20/w0001.faiss"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    res = snakemake(tmp_path, "--cores", "2", config=TINY)
    ran = jobs_run(res.stdout + res.stderr)
    built = {w for r, w in ran if r == "build_index"}
    epoch1 = {w for w in built if "epoch=1" in w}
    assert epoch1 == {"epoch=1, chrom=20, window=w0001"}
    assert not any("epoch=0" in w for w in built)
    trained = {w for r, w in ran if r == "train_epoch"}
    assert trained == {"epoch=1"}
    assert "rebuilding index shard" in res.stderr
    # training is deterministic: the re-run epoch gives the same weights as before
    assert same_weights(reference_run / "results/train/epoch_1/model.pt",
                        tmp_path / "results/train/epoch_1/model.pt")


def test_deleted_shard_reruns_alone(reference_run, tmp_path):
    _copy_run(reference_run, tmp_path)
    (tmp_path / "results/epochs/0/index/20/w0000.faiss").unlink()
    res = snakemake(tmp_path, "--cores", "2", config=TINY)
    ran = jobs_run(res.stdout + res.stderr)
    built = {w for r, w in ran if r == "build_index"}
    # of epoch 0 only the deleted shard; epoch 1's shards are keyed with epoch 0's weights,
    # which are re-trained, so they are dependents and are rebuilt
    assert {w for w in built if "epoch=0" in w} == {"epoch=0, chrom=20, window=w0000"}
    assert {w for r, w in ran if r == "train_epoch"} == {"epoch=0", "epoch=1"}
    assert "results/epochs/0/index/20/w0000.faiss is missing" in res.stderr
    for e in (0, 1):  # deterministic: the re-trained epochs equal the uninterrupted run's
        assert same_weights(reference_run / f"results/train/epoch_{e}/model.pt",
                            tmp_path / f"results/train/epoch_{e}/model.pt")


def test_deleted_imputed_chunk_reimputes_without_training(reference_run, tmp_path):
    _copy_run(reference_run, tmp_path)
    chunks = sorted((tmp_path / "results/impute/20").glob("c*.vcf.gz"))
    assert len(chunks) >= 2  # the tiny config imputes in several chunks
    chunks[1].unlink()
    res = snakemake(tmp_path, "--cores", "2", config=TINY)
    ran = jobs_run(res.stdout + res.stderr)
    assert {w for r, w in ran if r == "impute_chunk"} == {f"chrom=20, chunk={chunks[1].name.split('.')[0]}"}
    assert not any(r in ("train_epoch", "build_index", "encode", "define_windows") for r, _ in ran)
    assert vcf_text(reference_run / "results/imputed/20.vcf.gz") == \
        vcf_text(tmp_path / "results/imputed/20.vcf.gz")


def test_more_epochs_train_only_the_new_ones(reference_run, tmp_path):
    _copy_run(reference_run, tmp_path)
    res = snakemake(tmp_path, "--cores", "2", config=merge(TINY, {"epochs": 3}))
    ran = jobs_run(res.stdout + res.stderr)
    assert {w for r, w in ran if r == "train_epoch"} == {"epoch=2"}
    assert not any(r == "build_index" and ("epoch=0" in w or "epoch=1" in w) for r, w in ran)
    import pandas as pd

    metrics = pd.read_csv(tmp_path / "results/train/metrics.csv")
    assert list(metrics.epoch) == [0, 1, 2]


def test_a_validation_cap_reruns_the_epochs_only_where_it_binds(reference_run, tmp_path):
    """train.val_max_windows enters train_epoch's params only when it leaves windows out
    (vcfbert.rule_params): a cap at or above the run's windows keeps the finished epochs
    (nothing to do), a smaller one re-runs them, as any change of the training would."""
    _copy_run(reference_run, tmp_path)
    lines = (tmp_path / "results/windows/20.tsv").read_text().splitlines()
    n_windows = len(lines) - 1
    assert n_windows >= 2
    for cap in (n_windows, n_windows + 10, 0):
        res = snakemake(tmp_path, "--cores", "2", "-n",
                        config=merge(TINY, {"train": {"val_max_windows": cap}}))
        assert "Nothing to be done" in res.stdout + res.stderr, cap
    res = snakemake(tmp_path, "--cores", "2", "-n",
                    config=merge(TINY, {"train": {"val_max_windows": n_windows - 1}}))
    out = res.stdout + res.stderr
    assert "Params have changed" in out
    assert {w for r, w in jobs_run(out) if r == "train_epoch"} == {"epoch=0", "epoch=1"}
