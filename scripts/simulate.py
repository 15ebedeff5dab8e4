"""Snakemake adapter: rule simulate -> vcfbert.steps.simulate."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    steps.simulate(params=dict(snakemake.params.simulation),
                   reference_vcf=snakemake.output.reference, target_vcf=snakemake.output.targets,
                   truth_vcf=snakemake.output.truth, panel=snakemake.output.panel)
