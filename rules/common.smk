# Config validation, input resolution and input functions (kept small: logic is in vcfbert).
import os
import shlex
import sys
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# the package in src/ is importable by the workflow and by every job (also in conda envs)
sys.path.insert(0, os.path.join(workflow.basedir, "src"))
from vcfbert import cluster  # noqa: E402
from vcfbert.config_errors import describe_config_error  # noqa: E402
from vcfbert.inputs import expand as expand_files  # noqa: E402
from vcfbert.io.tsv import read_column, read_rows  # noqa: E402
from vcfbert.integrity import missing_shards, purge_corrupted_shards  # noqa: E402
from vcfbert.rule_params import train_epoch_params  # noqa: E402
from vcfbert.runtime import before_exit, export_for_jobs  # noqa: E402
from vcfbert.simulate import batch_path  # noqa: E402
from vcfbert.trained_panel import has_reference_at_array, read_manifest  # noqa: E402
from vcfbert.windows import impute_chunks  # noqa: E402

export_for_jobs(
    src=os.path.join(workflow.basedir, "src"),
    command=shlex.join(["snakemake", *sys.argv[1:]]) if workflow.is_main_process else None,
)

try:
    validate(config, schema="../workflow/schemas/config.schema.yaml")
except WorkflowError as exc:  # one line, not the sub-schema's dump
    problem = describe_config_error(exc)
    if problem is None:
        raise
    raise ValueError(problem) from None

# a trained panel (config `trained_panel`) replaces the reference and everything trained
TRAINED_PANEL = config.get("trained_panel", "").rstrip("/")
DEMO = not config["reference_vcf"] and not TRAINED_PANEL
RESULTS = "results"
EPOCH_RE = r"\d+|final"

# cheap steps run in the main Snakemake process, also on a cluster (no queueing latency)
localrules:
    all,
    simulate,
    list_chromosomes,
    parse_targets,
    define_windows,
    split_samples,
    refresh_mask,
    init_model,
    select_model,
    write_vcf,
    imputed_manifest,
    write_merged_vcf,
    evaluate,
    plot_accuracy,
    plot_training,
    plot_qc,


wildcard_constraints:
    chrom=r"[A-Za-z0-9._-]+",
    window=r"w\d+",
    chunk=r"c\d+",
    epoch=EPOCH_RE,

# an index shard whose checksum does not match its sidecar is removed here, so that the
# workflow rebuilds it (and only what depends on it) instead of using it
if workflow.is_main_process:
    purge_corrupted_shards(f"{RESULTS}/epochs", dry_run=workflow.dryrun)


def demo_or(key, demo_path):
    """The files a config key names (one file, a {chrom} pattern or a list), or the demo's."""
    if DEMO:
        return [f"{RESULTS}/simulate/{demo_path}"]
    return expand_files(config[key], key)


REFERENCE_FILES = [] if TRAINED_PANEL else demo_or("reference_vcf", "reference.vcf.gz")
if TRAINED_PANEL and config["reference_vcf"]:
    # optional: checked against the panel; Beagle phases unphased targets against it
    REFERENCE_FILES = expand_files(config["reference_vcf"], "reference_vcf")
if TRAINED_PANEL and not config["target_vcf"]:
    raise ValueError("trained_panel is set but target_vcf is empty: give the targets to impute "
                     "(--config target_vcf=batch.vcf.gz)")
TARGET_FILES = demo_or("target_vcf", "targets.vcf.gz")
TRUTH_FILES = demo_or("truth_vcf", "truth.vcf.gz") if (DEMO or config["truth_vcf"]) else []
PANEL = f"{RESULTS}/simulate/panel.tsv" if DEMO else config["panel"]
GENETIC_MAP = config.get("genetic_map") or ""
EPOCHS = int(config["epochs"])
MERGED_VCF = f"{RESULTS}/merged/imputed.vcf.gz"
SIMULATED_BATCHES = range(2, int(config["simulation"].get("target_batches", 1)) + 1)


if TRAINED_PANEL:  # the panel's files stand in for the training run's
    _MANIFEST = read_manifest(TRAINED_PANEL)
    PANEL_CONTIGS = [c["contig"] for c in _MANIFEST["contigs"]]
    REFERENCE_H5 = f"{TRAINED_PANEL}/{{chrom}}/reference.h5"
    WINDOWS_TSV = f"{TRAINED_PANEL}/{{chrom}}/windows.tsv"
    ARRAY_SITES = f"{TRAINED_PANEL}/{{chrom}}/array_sites.tsv"
    MODEL = f"{TRAINED_PANEL}/model.pt"
    KEY_ENCODER = f"{TRAINED_PANEL}/model.keys.npz"
    # panels built before vcfbert fitted a DR2 calibration have none: DR2 stays uncalibrated
    DR2_CALIBRATION = (f"{TRAINED_PANEL}/dr2_calibration.json"
                       if "dr2_calibration.json" in _MANIFEST["files"] else "")
    TRAINING_METRICS = f"{TRAINED_PANEL}/metrics.csv"
    PANEL_MANIFEST = f"{TRAINED_PANEL}/manifest.json"
    # panels built before vcfbert shipped it read each window's slots from the reference
    REFERENCE_AT_ARRAY = (f"{TRAINED_PANEL}/{{chrom}}/reference_at_array.h5"
                          if has_reference_at_array(_MANIFEST) else "")
else:
    PANEL_CONTIGS = []
    REFERENCE_H5 = f"{RESULTS}/ingest/{{chrom}}/reference.h5"
    WINDOWS_TSV = f"{RESULTS}/windows/{{chrom}}.tsv"
    ARRAY_SITES = ""
    MODEL = f"{RESULTS}/train/model.pt"
    KEY_ENCODER = f"{RESULTS}/train/model.keys.npz"
    DR2_CALIBRATION = f"{RESULTS}/train/dr2_calibration.json"
    TRAINING_METRICS = f"{RESULTS}/train/metrics.csv"
    PANEL_MANIFEST = ""
    REFERENCE_AT_ARRAY = ""  # the target store holds the copy


def chromosomes():
    """Chromosome labels (file-safe contig names), known once list_chromosomes has run."""
    out = checkpoints.list_chromosomes.get().output[0]
    return read_column(out, "wildcard")


def chromosome_file(column):
    """Input function: the file of a chromosome (``reference_file``, ``target_file``,
    ``genetic_map_file`` of ingest/chromosomes.tsv), or none."""

    def inner(wildcards):
        out = checkpoints.list_chromosomes.get().output[0]
        hits = [row[column] for row in read_rows(out) if row["wildcard"] == wildcards.chrom]
        return hits[0] if hits and hits[0] else []

    return inner


def first_reference(wildcards):
    return f"{RESULTS}/ingest/{chromosomes()[0]}/reference.h5"


def windows_of(chrom):
    if TRAINED_PANEL:
        out = WINDOWS_TSV.format(chrom=chrom)
    else:
        out = checkpoints.define_windows.get(chrom=chrom).output[0]
    return read_column(out, "window_id")


def n_windows():
    """The run's windows over all its chromosomes (after every define_windows checkpoint)."""
    return sum(len(windows_of(c)) for c in chromosomes())


def model_before(wildcards):
    """Weights an epoch's keys are built with: initial, previous epoch's, or selected."""
    if wildcards.epoch == "final":
        return f"{RESULTS}/train/model.pt"
    e = int(wildcards.epoch)
    return f"{RESULTS}/train/model_init.pt" if e == 0 else f"{RESULTS}/train/epoch_{e - 1}/model.pt"


def key_encoder_before(wildcards):
    """The exported key encoder (numpy) that goes with model_before."""
    return model_before(wildcards)[: -len(".pt")] + ".keys.npz"


# a frozen index: every epoch trains on epoch 0's mask and shards
FROZEN_INDEX = config["train"]["index_refresh"] == "frozen"
TRAINING_INDEX_EPOCHS = ["0"] if FROZEN_INDEX else [str(e) for e in range(EPOCHS)]


def index_epoch(wildcards):
    """Epoch whose mask and shards train epoch e: e itself, or 0 with a frozen index."""
    return "0" if FROZEN_INDEX else wildcards.epoch


def epoch_indexes(wildcards):
    e = index_epoch(wildcards)
    return [f"{RESULTS}/epochs/{e}/index/{c}/{w}.faiss" for c in chromosomes() for w in windows_of(c)]


def epoch_masks(wildcards):
    e = index_epoch(wildcards)
    return [f"{RESULTS}/masks/{c}/{e}.h5" for c in chromosomes()]


def per_chrom(pattern):
    def inner(wildcards):
        return [pattern.format(chrom=c, **dict(wildcards)) for c in chromosomes()]

    return inner


def chrom_windows(pattern):
    def inner(wildcards):
        return [pattern.format(chrom=wildcards.chrom, window=w)
                for w in windows_of(wildcards.chrom)]

    return inner


def chrom_chunks(pattern):
    """The chromosome's imputation chunks (consecutive windows, impute.windows_per_job each)."""

    def inner(wildcards):
        chunks = impute_chunks(windows_of(wildcards.chrom), int(config["impute"]["windows_per_job"]))
        return [pattern.format(chrom=wildcards.chrom, chunk=c) for c in chunks]

    return inner


def all_chunks(pattern):
    """Every chromosome's imputation chunks, chromosome after chromosome."""

    def inner(wildcards):
        return [path for c in chromosomes()
                for path in chrom_chunks(pattern)(SimpleNamespace(chrom=c))]

    return inner


def repair_targets():
    """Deleted (or purged) shards whose consumers exist: Snakemake would not rebuild them on
    its own (a missing intermediate does not trigger a re-run), so ``all`` asks for them."""
    if not workflow.is_main_process:
        return []
    found = [str(p) for p in missing_shards(RESULTS, [] if TRAINED_PANEL else TRAINING_INDEX_EPOCHS,
                                            int(config["impute"]["windows_per_job"]),
                                            windows_tsv=WINDOWS_TSV)]
    for p in found:
        print(f"vcfbert: {p} is missing; rebuilding it and what depends on it", file=sys.stderr)
    return found


REPAIR = repair_targets()


# --- cluster requests sized to the data (formulas and measurements: vcfbert/cluster.py,
# docs/cluster.md); each memory request grows with `attempt` (a retry after an OOM kill)


def mem_request(rule, data_mb):
    """Resource callable: ``rule``'s memory (MB) for ``data_mb(wildcards, input)`` MB of data,
    checked against the SLURM partition's largest node before submission."""

    def mem_mb(wildcards, input, attempt):
        request = cluster.request_mb(rule, data_mb(wildcards, input), attempt)
        return cluster.check_memory(rule, request, workflow, cluster.default_partition(workflow))

    return mem_mb


def thread_request(threads_of):
    """Threads callable: ``threads_of(wildcards, input)``, capped at the partition's CPUs."""

    def threads(wildcards, input):
        return cluster.fit_threads(threads_of(wildcards, input), workflow,
                                   cluster.default_partition(workflow))

    return threads


def reference_block_data(wildcards, input):
    return cluster.reference_block_mb(input.vcf)


def window_data(wildcards, input):
    return cluster.genotype_mb([input.reference]) / cluster.windows_count(input.windows)


def key_data(wildcards, input):
    return cluster.file_mb([input.key_file])


def training_data(wildcards, input):
    return cluster.genotype_mb(input.reference)


def epoch_data(wildcards, input):
    return cluster.training_cache_mb(input.reference,
                                     float(config["train"]["window_cache_gib"]))


def chunk_data(wildcards, input):
    w = config["windows"]
    return cluster.chunk_data_mb(input.reference, input.targets, input.windows,
                                 1 + 2 * int(w["flank_sites"]) / int(w["core_sites"]))


def phasing_mem(wildcards, input, attempt):
    """Pass-through for phased targets; Beagle's memory when they need phasing."""
    if input.reference and cluster.needs_phasing(input.targets):
        mb = cluster.beagle_mb(input.reference, input.targets, attempt)
    else:
        mb = cluster.request_mb("phase_targets", 0, attempt)
    return cluster.check_memory("phase_targets", mb, workflow, cluster.default_partition(workflow))


def phasing_threads(wildcards, input):
    return 4 if input.reference and cluster.needs_phasing(input.targets) else 1


def impute_threads(wildcards, input):
    """impute.threads: batches of target (or validation) haplotypes imputed at once."""
    return int(config["impute"]["threads"])


def training_threads(wildcards, input):
    return cluster.training_threads(input.reference)


def side_job_threads(wildcards):
    """Jobs nothing waits for (numba's cache, the plots): run locally they hold no core of
    Snakemake's count and take the cycles the pipeline leaves (nice 19, set by the step);
    a cluster job asks for one core (sbatch refuses --cpus-per-task=0)."""
    return 0 if workflow.local_exec else 1


onstart:
    # on SLURM: stop with one line when a job pends for a reason SLURM never lifts
    if cluster.on_slurm(workflow):
        cluster.PendingWatch({r.name for r in workflow.rules},
                             interval_s=float(os.environ.get("VCFBERT_PENDING_CHECK_S", 30))).start()


# the process would wait up to a second for the scheduler's rate-limit timer before exiting,
# and its final garbage collection would walk every module's objects
onsuccess:
    before_exit()


onerror:
    before_exit()


def final_outputs(wildcards):
    # the per-chromosome VCFs through their manifest (a fixed path: `snakemake -n` shows the
    # whole DAG before the chromosomes are known)
    out = [f"{RESULTS}/kernels.json", f"{RESULTS}/imputed/chromosomes.tsv", TRAINING_METRICS,
           f"{RESULTS}/report/training_curves.png", f"{RESULTS}/report/qc_sites.png"]
    if config.get("output", {}).get("merged_vcf"):
        out += [MERGED_VCF, f"{MERGED_VCF}.tbi"]
    if TRUTH_FILES:
        out += [f"{RESULTS}/evaluation/accuracy.tsv", f"{RESULTS}/report/r2_by_maf.png",
                f"{RESULTS}/report/dr2_calibration.png"]
    return out + REPAIR
