"""Snakemake adapter: rule compile_kernels -> vcfbert.steps.compile_kernels."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    steps.compile_kernels(out=snakemake.output[0])
