"""Snakemake adapter: rule plot_qc -> vcfbert.steps.qc_summary and the QC figure."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    steps.lowest_priority()  # a side job: no core of Snakemake's count
    steps.qc_summary(qc_sites=list(snakemake.input.qc_sites),
                     qc_samples=list(snakemake.input.qc_samples),
                     windows=list(snakemake.input.windows), out=snakemake.output.table)
    steps.plots(accuracy=None, per_variant=None, metrics_csv=None,
                qc_sites=list(snakemake.input.qc_sites), outputs={"qc": snakemake.output.plot})
