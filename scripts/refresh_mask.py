"""Snakemake adapter: rule refresh_mask -> vcfbert.steps.refresh_mask (seed = epoch)."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    contig = steps.contig_of(snakemake.input.chromosomes, snakemake.wildcards.chrom)
    steps.refresh_mask(targets_h5=snakemake.input.targets, contig=contig,
                       epoch=snakemake.wildcards.epoch,
                       drop_fraction=float(snakemake.params.drop_fraction),
                       out=snakemake.output[0])
