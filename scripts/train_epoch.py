"""Snakemake adapter: rule train_epoch -> vcfbert.ddp.train_epoch (one process per GPU)."""
import pandas as pd

from vcfbert import ddp
from vcfbert.runtime import run_step

with run_step(snakemake):
    inp = snakemake.input
    contigs = pd.read_csv(inp.chromosomes, sep="\t", dtype=str)["contig"].tolist()
    ddp.train_epoch(epoch=int(snakemake.wildcards.epoch), previous=inp.previous,
                    contigs=contigs, reference_h5=list(inp.reference),
                    targets_h5=list(inp.targets), windows_tsv=list(inp.windows),
                    masks=list(inp.masks), final_masks=list(inp.final_masks),
                    indexes=list(inp.indexes), split_tsv=inp.split,
                    out_model=snakemake.output.model, out_metrics=snakemake.output.metrics,
                    train_config=dict(snakemake.params.train), device=snakemake.params.device,
                    processes=max(1, int(snakemake.resources.get("gpu", 0))))
