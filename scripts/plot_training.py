"""Snakemake adapter: rule plot_training -> vcfbert.steps.plots."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    steps.lowest_priority()  # a side job: no core of Snakemake's count
    steps.plots(accuracy=None, per_variant=None, metrics_csv=snakemake.input.metrics,
                qc_sites=[], outputs={"training": snakemake.output[0]})
