"""Snakemake adapter: rule ligate -> vcfbert.steps.ligate."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    contig = steps.contig_of(snakemake.input.chromosomes, snakemake.wildcards.chrom)
    steps.ligate(contig=contig, reference_h5=snakemake.input.reference,
                 targets_h5=snakemake.input.targets, windows_tsv=snakemake.input.windows,
                 chunk_files=list(snakemake.input.chunk_files), out=snakemake.output[0],
                 dr2_calibration=snakemake.input.dr2_calibration or "")
