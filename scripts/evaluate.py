"""Snakemake adapter: rule evaluate -> vcfbert.steps.evaluate."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    steps.evaluate(imputed_vcf=list(snakemake.input.imputed),
                   truth_vcf=list(snakemake.input.truth),
                   reference_h5=list(snakemake.input.reference),
                   targets_h5=list(snakemake.input.targets), panel=snakemake.input.panel or None,
                   out_accuracy=snakemake.output.accuracy,
                   out_per_variant=snakemake.output.per_variant)
