"""Cluster requests from the data, the partition check, and the never-starting-job watch."""

from __future__ import annotations

import types

import pytest

from vcfbert import cluster


def test_memory_grows_with_data_and_attempt():
    small = cluster.request_mb("train_epoch", 1.0)
    big = cluster.request_mb("train_epoch", 600.0)
    assert small == 1600 and big == 3000  # 1500 + 2.5 MB per genotype MB, rounded up to 100
    assert cluster.request_mb("train_epoch", 600.0, attempt=2) == 6000
    assert cluster.request_mb("impute_chunk", 0.0) == 700


def test_data_sizes_from_the_stores(tiny_stores):
    import h5py

    with h5py.File(tiny_stores["ref"]) as h5:
        n_h, n_v = h5["call_haplotype"].shape
    assert cluster.genotype_mb([tiny_stores["ref"], "missing.h5"]) == pytest.approx(n_h * n_v / 1e6)
    # a training job's windows: the genotypes, at most train.window_cache_gib (0: no bound)
    assert cluster.training_cache_mb([tiny_stores["ref"]], 0) == pytest.approx(n_h * n_v / 1e6)
    assert cluster.training_cache_mb([tiny_stores["ref"]], 1e-6) == pytest.approx(2**30 / 1e12)
    assert cluster.training_cache_mb([tiny_stores["ref"]], 2.0) == pytest.approx(n_h * n_v / 1e6)
    n_t = h5py.File(tiny_stores["tgt"])["call_haplotype"].shape[0]
    chunk = cluster.chunk_data_mb(tiny_stores["ref"], tiny_stores["tgt"], tiny_stores["windows"])
    # a window's span of the reference and two windows' probabilities: never more than the
    # whole reference and every target haplotype's probabilities
    assert 0 < chunk <= cluster.genotype_mb([tiny_stores["ref"]]) + n_t * n_v * 4 / 1e6
    narrow = cluster.chunk_data_mb(tiny_stores["ref"], tiny_stores["tgt"], tiny_stores["windows"],
                                   span_cores=0.0)
    assert narrow < chunk  # the reference's share grows with the span
    assert cluster.reference_block_mb(tiny_stores["paths"].reference_vcf) == \
        pytest.approx(120 * 4096 / 1e6)
    assert cluster.training_threads([tiny_stores["ref"]]) == 2
    assert not cluster.needs_phasing(tiny_stores["paths"].target_vcf)


def fake_workflow(partition: str = "") -> types.SimpleNamespace:
    return types.SimpleNamespace(
        executor_plugin=types.SimpleNamespace(name="slurm"),
        resource_settings=types.SimpleNamespace(default_resources=types.SimpleNamespace(
            args=["tmpdir=system_tmpdir", f"slurm_partition='{partition}'"])))


def test_partition_limits_from_sinfo(monkeypatch):
    cluster.partition_limits.cache_clear()
    monkeypatch.setattr(cluster.shutil, "which", lambda tool: "/usr/bin/sinfo")
    monkeypatch.setattr(cluster, "_sinfo", lambda p: ["debug*|2|20000", "big|64|512000",
                                                      "big|32|256000"])
    assert cluster.partition_limits("") == cluster.PartitionLimits("debug", 2, 20000)
    assert cluster.partition_limits("big") == cluster.PartitionLimits("big", 64, 512000)
    assert cluster.default_partition(fake_workflow("big")) == "big"
    wf = fake_workflow("debug")
    assert cluster.fit_threads(8, wf, "debug") == 2
    assert cluster.fit_threads(8, types.SimpleNamespace(executor_plugin=None), "debug") == 8
    assert cluster.check_memory("train_epoch", 16000, wf, "debug") == 16000
    with pytest.raises(cluster.RequestTooLarge, match=r"rule train_epoch needs mem_mb=32000 but "
                       r"the largest node of partition debug has 20000 MB.*--set-resources "
                       r"train_epoch:mem_mb="):
        cluster.check_memory("train_epoch", 32000, wf, "debug")
    cluster.partition_limits.cache_clear()


def test_pending_jobs_that_never_start_are_found():
    out = ("101|(PartitionConfig)|rule_phase_targets|4|16000M|debug|4:00:00\n"
           "102|(Resources)|rule_train_epoch|2|3000M|debug|12:00:00\n"
           "103|(PartitionTimeLimit)|rule_other_tool|1|1000M|debug|1:00:00\n"
           "104|(QOSMaxMemoryPerJob)|rule_impute_chunk_wildcards_20_c0001|1|900M|gpu|1:00:00\n")
    stuck = cluster.parse_squeue(out, {"phase_targets", "train_epoch", "impute_chunk"})
    assert [(j.job_id, j.rule, j.reason) for j in stuck] == [
        ("101", "phase_targets", "PartitionConfig"), ("104", "impute_chunk", "QOSMaxMemoryPerJob")]
    line = cluster.describe(stuck[0])
    assert "\n" not in line
    assert "SLURM job 101 (rule phase_targets) can never start" in line
    assert "4 CPUs, 16000M memory" in line and "--set-resources phase_targets:mem_mb" in line


def test_the_watch_reports_the_first_stuck_poll(monkeypatch):
    seen = []
    watch = cluster.PendingWatch({"train_epoch"}, interval_s=0.01, on_stuck=seen.append)
    polls = iter([[], [cluster.PendingJob("7", "PartitionConfig", "train_epoch", "8", "32G", "p",
                                          "1:00")]])
    monkeypatch.setattr(watch, "poll", lambda: next(polls))
    watch.start()
    watch.thread.join(timeout=5)
    assert not watch.thread.is_alive()
    assert [j.job_id for j in seen[0]] == ["7"]


def test_inputs_not_made_yet_give_the_floor():
    """Snakemake evaluates requests before checkpoint inputs exist: placeholders and folders
    (a placeholder's characters include '/') must not be opened."""
    assert cluster.genotype_mb("<TBD>") == 0 and cluster.genotype_mb(["/", "<TBD>"]) == 0
    assert cluster.training_threads("<TBD>") == 2
    assert cluster.chunk_data_mb("<TBD>", "/", "<TBD>") == 0
    assert not cluster.needs_phasing("/")
