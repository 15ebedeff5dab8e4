"""Snakemake adapter: rule phase_targets -> vcfbert.phase.phase_targets."""
from vcfbert import steps
from vcfbert.phase import phase_targets
from vcfbert.runtime import run_step

with run_step(snakemake):
    contig = steps.contig_of(snakemake.input.chromosomes, snakemake.wildcards.chrom)
    phase_targets(contig=contig, target_vcf=snakemake.input.targets,
                  reference_vcf=snakemake.input.get("reference", ""),
                  out=snakemake.output.vcf, tool=snakemake.params.tool,
                  beagle_command=snakemake.params.beagle, threads=snakemake.threads,
                  reference_contigs=list(snakemake.params.reference_contigs))
