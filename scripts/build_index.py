"""Snakemake adapter: rule build_index -> vcfbert.steps.build_index."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    wc = snakemake.wildcards
    contig = steps.contig_of(snakemake.input.chromosomes, wc.chrom)
    steps.build_index(keys_npy=snakemake.input.key_file, out=snakemake.output.index,
                      key_encoder=snakemake.input.key_encoder,
                      meta={"contig": contig, "window_id": wc.window,
                            "epoch": wc.epoch, "mask_version": wc.epoch})
