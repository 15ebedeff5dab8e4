"""Snakemake adapter: rule verify_trained_panel -> vcfbert.steps.verify_trained_panel."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    steps.verify_trained_panel(panel_dir=snakemake.params.panel, out=snakemake.output[0])
