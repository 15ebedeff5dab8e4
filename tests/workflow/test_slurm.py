"""The SLURM profile against a real one-node SLURM cluster on localhost (slow).

Installs slurm-wlm and munge from Debian's packages when they are missing (as root), installs
the executor plugin into a private folder (so the rest of the suite stays free of it), starts
munged, slurmctld and slurmd with state under a temporary folder, runs the tiny workflow with
``snakemake --profile slurm``, then fails one index shard on purpose and checks that the re-run
submits only that shard and what depends on it. Daemons are stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SNAKEFILE, TINY, merge, write_config

pytestmark = pytest.mark.slow


def _have_slurm() -> bool:
    return all(shutil.which(t) for t in ("slurmctld", "slurmd", "munged", "sbatch", "squeue"))


def _install_slurm() -> bool:
    if _have_slurm():
        return True
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
    res = subprocess.run(["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"], env=env,
                         capture_output=True, text=True)
    return res.returncode == 0 and _have_slurm()


def _install_plugin(target: Path) -> bool:
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                          str(target), "snakemake-executor-plugin-slurm==2.8.0",
                          "snakemake-executor-plugin-slurm-jobstep==0.6.1"],
                         capture_output=True, text=True)
    return res.returncode == 0


def _mem_mb() -> int:
    """The node's memory: this machine's, at most 20 GB (the size of the CI machine's node)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return min(20000, int(line.split()[1]) // 1024 - 1024)
    return 4000


class LocalSlurm:
    """A one-node cluster: munged + slurmctld + slurmd, everything under ``root``."""

    # snakemake-executor-plugin-slurm-jobstep 0.6.1 removes SLURM_CONF from the environment of
    # the srun it starts inside each job, so the configuration must sit where SLURM looks by
    # default; the test writes it there (only if that is free) and removes it afterwards
    ETC = Path("/etc/slurm")

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = self.ETC / "slurm.conf"
        self.pids: list[Path] = []
        self.created: list[Path] = []

    def write_config(self) -> None:
        r = self.root
        self.ETC.mkdir(parents=True, exist_ok=True)
        for d in ("state", "spool"):
            (r / d).mkdir(parents=True, exist_ok=True)
        cpus = os.cpu_count() or 2
        self.conf.write_text(f"""\
ClusterName=vcfbert-test
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MinJobAge=600
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
GresTypes=gpu
NodeName=localhost CPUs={cpus} RealMemory={_mem_mb()} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
        (self.ETC / "gres.conf").write_text("AutoDetect=off\nNodeName=localhost Name=gpu "
                                            "File=/dev/null\n")
        self.created += [self.conf, self.ETC / "gres.conf"]

    def start(self) -> None:
        self.write_config()
        run = Path("/run/munge")
        run.mkdir(parents=True, exist_ok=True)
        shutil.chown(run, "munge", "munge")
        if not Path("/etc/munge/munge.key").exists():
            subprocess.run(["mungekey", "--create"], check=True)
            shutil.chown("/etc/munge/munge.key", "munge", "munge")
        if not self.munge_works():
            # a pid file or socket left by a dead munged (e.g. from the package's postinst in a
            # container) makes slurmctld's authentication fail with "connection refused"
            for stale in (run / "munged.pid", run / "munge.socket.2", run / "munge.socket.2.lock"):
                stale.unlink(missing_ok=True)
            subprocess.run(["runuser", "-u", "munge", "--", "munged", "--force"], check=True)
            self.pids.append(run / "munged.pid")
            t0 = time.time()
            while not self.munge_works():
                if time.time() - t0 > 30:
                    raise RuntimeError("munged does not answer (munge -n | unmunge fails)")
                time.sleep(0.5)
        env = self.env()
        subprocess.run(["slurmctld", "-f", str(self.conf)], check=True, env=env)
        self.pids.append(self.root / "slurmctld.pid")
        subprocess.run(["slurmd", "-f", str(self.conf)], check=True, env=env)
        self.pids.append(self.root / "slurmd.pid")
        t0 = time.time()
        out = ""
        while time.time() - t0 < 120:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                                 env=env).stdout.strip()
            if out == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"SLURM node did not become idle: {out!r}\n"
                           f"{(self.root / 'slurmctld.log').read_text()[-2000:]}")

    @staticmethod
    def munge_works() -> bool:
        """Whether a munged answers: a credential made by ``munge -n`` decodes with unmunge."""
        cred = subprocess.run(["munge", "-n"], capture_output=True)
        if cred.returncode != 0:
            return False
        return subprocess.run(["unmunge"], input=cred.stdout, capture_output=True).returncode == 0

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def stop(self) -> None:
        for pid_file in reversed(self.pids):
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        for path in self.created:
            path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not _install_slurm():
        pytest.skip("SLURM is not installed and cannot be installed here (needs root + apt)")
    plugins = tmp_path_factory.mktemp("plugins")
    if not _install_plugin(plugins):
        pytest.skip("cannot install snakemake-executor-plugin-slurm (no PyPI access)")
    if LocalSlurm.ETC.joinpath("slurm.conf").exists():
        pytest.skip("/etc/slurm/slurm.conf exists: a real cluster is configured here; the test "
                    "will not overwrite it")
    c = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    c.start()
    yield c, plugins
    c.stop()


def run_profile(workdir: Path, cluster, plugins: Path, config: dict, extra_env=None,
                check: bool = True, extra_args: tuple[str, ...] = ()
                ) -> subprocess.CompletedProcess:
    cfg_path = write_config(workdir, config)
    env = {**cluster.env(), **(extra_env or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(plugins), env.get("PYTHONPATH", "")])
    # the users' exact command, from the repository root (./slurm -> profiles/slurm), with the
    # profile's requests as they are: the rules size them to the data and the node
    cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", "-s", str(SNAKEFILE),
           "-d", str(workdir), "--configfile", str(cfg_path),
           "--slurm-init-seconds-before-status-checks", "2", "--retries", "0", *extra_args]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    if check and res.returncode != 0:
        raise AssertionError(f"{res.stdout[-3000:]}\n{res.stderr[-5000:]}")
    return res


def submitted(text: str) -> list[str]:
    """The 'rule: wildcards' of every job submitted to SLURM, from Snakemake's output."""
    jobs, rule = [], None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("rule "):
            rule = s.split()[1].rstrip(":")
            jobs.append(rule)
        elif s.startswith("wildcards:") and jobs and rule:
            jobs[-1] = f"{rule}: {s[len('wildcards:'):].strip()}"
    return jobs


def test_profile_on_real_slurm_and_failed_shard_rerun(cluster, tmp_path):
    c, plugins = cluster
    cfg = merge(TINY, {"epochs": 1})
    # compile_kernels fails within seconds, long before any index shard is ready, so every
    # shard below is submitted after a failure: without keep-going none would be (that once
    # went unseen because profiles/default overrode the SLURM profile's keep-going)
    fail = {"VCFBERT_INJECT_FAILURE": "compile_kernels;build_index:epoch=0,window_id=w0001"}
    first = run_profile(tmp_path, c, plugins, cfg, extra_env=fail, check=False)
    output = first.stdout + first.stderr
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").rglob("*.log"))
    assert first.returncode != 0
    assert "failure injected on purpose (compile_kernels)" in output + logs
    assert "failure injected on purpose (build_index:epoch=0,window_id=w0001)" in output + logs
    index = tmp_path / "results/epochs/0/index/20"
    windows = [line.split("\t")[0] for line in
               (tmp_path / "results/windows/20.tsv").read_text().splitlines()[1:]]
    built = {w for w in windows if (index / f"{w}.faiss").exists()}
    # keep-going: every other shard of the epoch is built, whatever the timing (a job array
    # once failed healthy siblings and deleted a finished shard's outputs: plugin issue #447)
    assert built == set(windows) - {"w0001"}, (built, output[-4000:])
    # the re-run submits the failed jobs alone (the shard, compile_kernels), then what
    # depends on them
    second = run_profile(tmp_path, c, plugins, cfg)
    jobs = submitted(second.stdout + second.stderr)
    shards = [j for j in jobs if j.startswith("build_index") and "epoch=0" in j]
    assert shards == ["build_index: epoch=0, chrom=20, window=w0001"]
    assert "compile_kernels" in jobs
    assert any(j.startswith("train_epoch") for j in jobs)
    assert (tmp_path / "results/imputed/20.vcf.gz").exists()
    assert (tmp_path / "results/evaluation/accuracy.tsv").exists()
    slurm_logs = list((tmp_path / ".snakemake/slurm_logs").rglob("*.log"))
    assert slurm_logs  # the jobs really went through sbatch


def test_a_request_no_node_can_meet_stops_with_one_line(cluster, tmp_path):
    """A user's override that asks for more CPUs than the node has: SLURM leaves the job
    pending (PartitionConfig); the run stops within a minute with one line, never hangs."""
    c, plugins = cluster
    t0 = time.time()
    res = run_profile(tmp_path, c, plugins, TINY, check=False,
                      extra_env={"VCFBERT_PENDING_CHECK_S": "5"},
                      extra_args=("--set-threads", "phase_targets=8"))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert time.time() - t0 < 300
    line = [x for x in out.splitlines() if "can never start" in x]
    assert line and "rule phase_targets" in line[0] and "PartitionConfig" in line[0], out[-3000:]
    assert "--set-threads phase_targets=" in line[0]
    queue = subprocess.run(["squeue", "-h", "-o", "%k"], capture_output=True, text=True,
                           env=c.env()).stdout
    assert "phase_targets" not in queue  # cancelled, not left behind
