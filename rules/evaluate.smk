# Accuracy against the truth VCF (when given) and the report's figures.


rule evaluate:
    input:
        imputed=per_chrom(f"{RESULTS}/imputed/{{chrom}}.vcf.gz"),
        truth=TRUTH_FILES,
        reference=per_chrom(REFERENCE_H5),
        targets=per_chrom(f"{RESULTS}/ingest/{{chrom}}/targets.h5"),
        panel=PANEL or [],
    output:
        accuracy=report(f"{RESULTS}/evaluation/accuracy.tsv",
                        caption="../workflow/report/accuracy.rst", category="Accuracy"),
        per_variant=f"{RESULTS}/evaluation/per_variant.tsv.gz",
    log:
        "logs/evaluate/evaluate.log",
    benchmark:
        "benchmarks/evaluate/evaluate.tsv"
    threads: 1
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/evaluate.py"


rule plot_accuracy:
    input:
        accuracy=f"{RESULTS}/evaluation/accuracy.tsv",
        per_variant=f"{RESULTS}/evaluation/per_variant.tsv.gz",
    output:
        r2=report(f"{RESULTS}/report/r2_by_maf.png", caption="../workflow/report/r2_by_maf.rst",
                  category="Accuracy"),
        calibration=report(f"{RESULTS}/report/dr2_calibration.png",
                           caption="../workflow/report/dr2_calibration.rst",
                           category="Accuracy"),
    log:
        "logs/evaluate/plot_accuracy.log",
    threads: 1
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/plot_accuracy.py"


rule plot_training:
    input:
        metrics=TRAINING_METRICS,
        # a trained panel's metrics are read once list_chromosomes has checked its files
        checked=f"{RESULTS}/ingest/chromosomes.tsv" if TRAINED_PANEL else [],
    output:
        report(f"{RESULTS}/report/training_curves.png",
               caption="../workflow/report/training_curves.rst", category="Training"),
    log:
        "logs/evaluate/plot_training.log",
    threads: side_job_threads
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/plot_training.py"


rule plot_qc:
    input:
        qc_sites=per_chrom(f"{RESULTS}/qc/{{chrom}}.sites.tsv"),
        qc_samples=per_chrom(f"{RESULTS}/qc/{{chrom}}.samples.tsv"),
        windows=per_chrom(WINDOWS_TSV),
    output:
        plot=report(f"{RESULTS}/report/qc_sites.png", caption="../workflow/report/qc.rst",
                    category="Target QC"),
        table=report(f"{RESULTS}/qc/summary.tsv", caption="../workflow/report/qc.rst",
                     category="Target QC"),
    log:
        "logs/evaluate/plot_qc.log",
    threads: side_job_threads
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/plot_qc.py"
