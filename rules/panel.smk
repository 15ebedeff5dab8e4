# Trained panel: built once from a training run (`snakemake trained_panel`). A batch imputed
# with it (`--config trained_panel=DIR target_vcf=...`) has its files checked by
# list_chromosomes, the first job that reads the panel (rules/ingest.smk).

if not TRAINED_PANEL:

    localrules:
        trained_panel,

    rule trained_panel:
        input:
            chromosomes=f"{RESULTS}/ingest/chromosomes.tsv",
            reference=per_chrom(REFERENCE_H5),
            targets=per_chrom(f"{RESULTS}/ingest/{{chrom}}/targets.h5"),
            windows=per_chrom(WINDOWS_TSV),
            model=MODEL,
            key_encoder=KEY_ENCODER,
            metrics=TRAINING_METRICS,
            dr2_calibration=DR2_CALIBRATION,
            vcf=REFERENCE_FILES,
        output:
            directory(f"{RESULTS}/trained_panel"),
        log:
            "logs/panel/trained_panel.log",
        benchmark:
            "benchmarks/panel/trained_panel.tsv"
        threads: 1
        conda:
            "../envs/vcfbert.yaml"
        script:
            "../scripts/trained_panel.py"
