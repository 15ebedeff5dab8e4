"""Snakemake adapter: rule select_model -> vcfbert.steps.select_model."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    steps.select_model(models=list(snakemake.input.models),
                       metrics=list(snakemake.input.metrics),
                       out_model=snakemake.output.model, out_csv=snakemake.output.metrics)
