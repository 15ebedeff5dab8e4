"""Snakemake adapter: rule encode -> vcfbert.steps.encode."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    contig = steps.contig_of(snakemake.input.chromosomes, snakemake.wildcards.chrom)
    steps.encode(key_encoder=snakemake.input.key_encoder, contig=contig,
                 window_id=snakemake.wildcards.window, reference_h5=snakemake.input.reference,
                 targets_h5=snakemake.input.targets, windows_tsv=snakemake.input.windows,
                 mask_h5=snakemake.input.mask, out=snakemake.output[0])
