"""Snakemake adapter: rules write_vcf and write_merged_vcf -> vcfbert.steps.write_vcf."""
from vcfbert import steps
from vcfbert.runtime import run_step, workflow_command

with run_step(snakemake):
    steps.write_vcf(pieces=snakemake.input.pieces, targets_h5=snakemake.input.targets,
                    reference_h5=snakemake.input.reference, out=snakemake.output.vcf,
                    command=workflow_command(snakemake), threads=snakemake.threads,
                    format_fields=list(snakemake.params.format_fields),
                    gp=bool(snakemake.params.gp))
