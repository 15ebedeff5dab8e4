"""Snakemake adapter: rule init_model -> vcfbert.steps.init_model."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    steps.init_model(model_config=dict(snakemake.params.model), seed=int(snakemake.params.seed),
                     out=snakemake.output.model,
                     reference_h5=snakemake.input.get("reference", ""))
