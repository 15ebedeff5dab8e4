"""Snakemake adapter: rule plot_accuracy -> vcfbert.steps.plots."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    steps.plots(accuracy=snakemake.input.accuracy, per_variant=snakemake.input.per_variant,
                metrics_csv=None, qc_sites=[],
                outputs={"r2_by_maf": snakemake.output.r2,
                         "calibration": snakemake.output.calibration})
