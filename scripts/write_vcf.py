"""Snakemake adapter: rule write_vcf -> vcfbert.steps.write_vcf."""
from vcfbert import steps
from vcfbert.runtime import run_step, workflow_command

with run_step(snakemake):
    steps.write_vcf(chromosome_files=snakemake.input.chromosomes,
                    reference_h5=snakemake.input.reference, out=snakemake.output.vcf,
                    command=workflow_command(snakemake), threads=snakemake.threads,
                    format_fields=list(snakemake.params.format_fields))
