# Imputation of the targets: per window, ligated per chromosome, one indexed VCF.


rule impute_window:
    input:
        chromosomes=f"{RESULTS}/ingest/chromosomes.tsv",
        model=f"{RESULTS}/train/model.pt",
        index=f"{RESULTS}/epochs/final/index/{{chrom}}/{{window}}.faiss",
        reference=f"{RESULTS}/ingest/{{chrom}}/reference.h5",
        targets=f"{RESULTS}/ingest/{{chrom}}/targets.h5",
        windows=f"{RESULTS}/windows/{{chrom}}.tsv",
        mask=f"{RESULTS}/masks/{{chrom}}/final.h5",
    output:
        f"{RESULTS}/impute/{{chrom}}/{{window}}.h5",
    params:
        batch_size=config["impute"]["batch_size"],
        device=config["device"],
    log:
        "logs/impute/{chrom}.{window}.log",
    benchmark:
        "benchmarks/impute/{chrom}.{window}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        gpu=config["resources"]["impute_gpus"],
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/impute_window.py"


rule ligate:
    input:
        chromosomes=f"{RESULTS}/ingest/chromosomes.tsv",
        windows_files=chrom_windows(f"{RESULTS}/impute/{{chrom}}/{{window}}.h5"),
        reference=f"{RESULTS}/ingest/{{chrom}}/reference.h5",
        targets=f"{RESULTS}/ingest/{{chrom}}/targets.h5",
        windows=f"{RESULTS}/windows/{{chrom}}.tsv",
    output:
        f"{RESULTS}/impute/{{chrom}}.h5",
    log:
        "logs/impute/{chrom}.ligate.log",
    benchmark:
        "benchmarks/impute/{chrom}.ligate.tsv"
    threads: 1
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/ligate.py"


rule write_vcf:
    input:
        chromosomes=per_chrom(f"{RESULTS}/impute/{{chrom}}.h5"),
        reference=per_chrom(f"{RESULTS}/ingest/{{chrom}}/reference.h5"),
    output:
        vcf=f"{RESULTS}/imputed/imputed.vcf.gz",
        tbi=f"{RESULTS}/imputed/imputed.vcf.gz.tbi",
    log:
        "logs/impute/write_vcf.log",
    benchmark:
        "benchmarks/impute/write_vcf.tsv"
    threads: 1
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/write_vcf.py"
