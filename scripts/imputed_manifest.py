"""Snakemake adapter: rule imputed_manifest -> vcfbert.steps.imputed_manifest."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    steps.imputed_manifest(vcfs=list(snakemake.input.vcfs),
                           chromosomes_tsv=snakemake.input.chromosomes,
                           out=snakemake.output[0])
