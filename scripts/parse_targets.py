"""Snakemake adapter: rule parse_targets -> vcfbert.steps.parse_targets."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    contig = steps.contig_of(snakemake.input.chromosomes, snakemake.wildcards.chrom)
    steps.parse_targets(target_vcf=snakemake.input.vcf, reference_h5=snakemake.input.reference,
                        contig=contig,
                        multiallelic=snakemake.params.multiallelic,
                        min_call_rate=float(snakemake.params.min_call_rate),
                        out=snakemake.output.targets, qc_sites=snakemake.output.qc_sites,
                        qc_samples=snakemake.output.qc_samples,
                        array_sites=snakemake.input.get("array", ""),
                        max_missing_array_fraction=float(snakemake.params.max_missing),
                        panel=snakemake.input.get("panel") or None)
