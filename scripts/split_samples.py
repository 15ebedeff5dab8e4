"""Snakemake adapter: rule split_samples -> vcfbert.steps.split_samples."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    steps.split_samples(reference_h5=snakemake.input.reference,
                        val_fraction=float(snakemake.params.val_fraction),
                        seed=int(snakemake.params.seed), out=snakemake.output[0])
