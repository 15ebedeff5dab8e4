# Trained panel: built once from a training run (`snakemake trained_panel`), verified before a
# batch is imputed with it (`--config trained_panel=DIR target_vcf=...`).

if TRAINED_PANEL:

    localrules:
        verify_trained_panel,

    rule verify_trained_panel:
        input:
            manifest=f"{TRAINED_PANEL}/manifest.json",
        output:
            f"{RESULTS}/trained_panel.verified.json",
        params:
            panel=TRAINED_PANEL,
        log:
            "logs/panel/verify_trained_panel.log",
        threads: 1
        conda:
            "../envs/vcfbert.yaml"
        script:
            "../scripts/verify_trained_panel.py"

else:

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
