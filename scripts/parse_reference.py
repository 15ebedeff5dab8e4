"""Snakemake adapter: rule parse_reference -> vcfbert.steps.parse_reference."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    contig = steps.contig_of(snakemake.input.chromosomes, snakemake.wildcards.chrom)
    steps.parse_reference(reference_vcf=snakemake.input.vcf, target_vcf=snakemake.input.targets,
                          contig=contig, panel=snakemake.input.panel or None,
                          multiallelic=snakemake.params.multiallelic,
                          overlap=snakemake.params.overlap, out=snakemake.output[0],
                          genetic_map=snakemake.input.genetic_map or None)
