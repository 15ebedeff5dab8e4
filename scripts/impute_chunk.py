"""Snakemake adapter: rule impute_chunk -> vcfbert.steps.impute_chunk."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    contig = steps.contig_of(snakemake.input.chromosomes, snakemake.wildcards.chrom)
    steps.impute_chunk(checkpoint=snakemake.input.model, key_encoder=snakemake.input.key_encoder,
                       contig=contig, chunk=snakemake.wildcards.chunk,
                       windows_per_job=int(snakemake.params.windows_per_job),
                       reference_h5=snakemake.input.reference,
                       targets_h5=snakemake.input.targets, windows_tsv=snakemake.input.windows,
                       mask_h5=snakemake.input.mask, out=snakemake.output.piece,
                       batch_size=int(snakemake.params.batch_size),
                       device=snakemake.params.device, threads=int(snakemake.threads),
                       copying_states=int(snakemake.params.copying_states),
                       match_states=int(snakemake.params.match_states),
                       dr2_calibration=snakemake.input.dr2_calibration or "",
                       format_fields=list(snakemake.params.format_fields),
                       gp=bool(snakemake.params.gp),
                       reference_at_sites_h5=snakemake.input.get("reference_at_array", ""))
