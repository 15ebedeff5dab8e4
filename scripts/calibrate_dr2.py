"""Snakemake adapter: rule calibrate_dr2 -> vcfbert.steps.calibrate_dr2."""
import pandas as pd

from vcfbert import steps
from vcfbert.runtime import run_step

with run_step(snakemake):
    inp = snakemake.input
    steps.calibrate_dr2(model=inp.model,
                        contigs=pd.read_csv(inp.chromosomes, sep="\t", dtype=str)["contig"].tolist(),
                        reference_h5=list(inp.reference), targets_h5=list(inp.targets),
                        windows_tsv=list(inp.windows), final_masks=list(inp.final_masks),
                        split_tsv=inp.split, out=snakemake.output[0],
                        samples=int(snakemake.params.samples), device=snakemake.params.device,
                        threads=int(snakemake.threads),
                        copying_states=int(snakemake.params.copying_states),
                        match_states=int(snakemake.params.match_states),
                        windows=int(snakemake.params.windows))
