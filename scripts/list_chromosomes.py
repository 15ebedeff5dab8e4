"""Snakemake adapter: checkpoint list_chromosomes -> vcfbert.steps.list_chromosomes."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    steps.list_chromosomes(reference_vcf=list(snakemake.input.reference),
                           target_vcf=list(snakemake.input.targets), out=snakemake.output[0],
                           trained_panel=snakemake.params.trained_panel,
                           genetic_map=snakemake.params.genetic_map,
                           restrict=list(snakemake.params.chromosomes))
