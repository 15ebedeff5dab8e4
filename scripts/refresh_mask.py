"""Snakemake adapter: rule refresh_mask -> vcfbert.steps.refresh_mask (seed = epoch)."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    steps.refresh_mask(targets_h5=snakemake.input.targets, contig=snakemake.params.contig,
                       epoch=snakemake.wildcards.epoch,
                       drop_fraction=float(snakemake.params.drop_fraction),
                       out=snakemake.output[0])
