"""Snakemake adapter: checkpoint define_windows -> vcfbert.steps.define_windows."""
from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    steps.define_windows(reference_h5=snakemake.input.reference,
                         targets_h5=snakemake.input.targets,
                         core_sites=int(snakemake.params.core_sites),
                         flank_sites=int(snakemake.params.flank_sites), out=snakemake.output[0])
