"""Snakemake adapter: rule trained_panel -> vcfbert.steps.trained_panel."""
from vcfbert import steps
from vcfbert.runtime import run_step, workflow_command

with run_step(snakemake):
    steps.trained_panel(out_dir=snakemake.output[0], chromosomes_tsv=snakemake.input.chromosomes,
                        reference_h5=list(snakemake.input.reference),
                        targets_h5=list(snakemake.input.targets),
                        windows_tsv=list(snakemake.input.windows), model=snakemake.input.model,
                        key_encoder=snakemake.input.key_encoder,
                        metrics_csv=snakemake.input.metrics,
                        dr2_calibration=snakemake.input.dr2_calibration,
                        reference_vcf=list(snakemake.input.vcf), config=dict(snakemake.config),
                        command=workflow_command(snakemake))
