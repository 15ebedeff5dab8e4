"""Snakemake adapter: rule impute_window -> vcfbert.steps.impute_window."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    contig = steps.contig_of(snakemake.input.chromosomes, snakemake.wildcards.chrom)
    steps.impute_window(checkpoint=snakemake.input.model, method="model",
                        contig=contig, window_id=snakemake.wildcards.window,
                        reference_h5=snakemake.input.reference,
                        targets_h5=snakemake.input.targets, windows_tsv=snakemake.input.windows,
                        mask_h5=snakemake.input.mask, index=snakemake.input.index,
                        out=snakemake.output[0], batch_size=int(snakemake.params.batch_size),
                        device=snakemake.params.device)
