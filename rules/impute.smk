# Imputation of the targets: per chunk of consecutive windows, each job writing its records
# (a VCF piece); one indexed VCF per chromosome from its pieces (and one for all of them with
# output.merged_vcf).


rule impute_chunk:
    input:
        chromosomes=f"{RESULTS}/ingest/chromosomes.tsv",
        model=MODEL,
        key_encoder=KEY_ENCODER,
        reference=REFERENCE_H5,
        targets=f"{RESULTS}/ingest/{{chrom}}/targets.h5",
        windows=WINDOWS_TSV,
        mask=f"{RESULTS}/masks/{{chrom}}/final.h5",
        dr2_calibration=DR2_CALIBRATION or [],
        # a trained panel's copy of the reference at its array's sites, when it has one
        reference_at_array=REFERENCE_AT_ARRAY or [],
    output:
        piece=f"{RESULTS}/impute/{{chrom}}/{{chunk}}.vcf.gz",
        sidecar=f"{RESULTS}/impute/{{chrom}}/{{chunk}}.json",
    params:
        batch_size=config["impute"]["batch_size"],
        windows_per_job=config["impute"]["windows_per_job"],
        copying_states=config["impute"]["copying_states"],
        match_states=config["impute"]["match_states"],
        format_fields=config.get("output", {}).get("format_fields", []),
        gp=config.get("output", {}).get("gp", True),
        device=config["device"],
    log:
        "logs/impute/{chrom}.{chunk}.log",
    benchmark:
        "benchmarks/impute/{chrom}.{chunk}.tsv"
    threads: thread_request(impute_threads)  # batches at once (capped at --cores)
    resources:
        mem_mb=mem_request("impute_chunk", chunk_data),
        runtime=60,
        gpu=config["resources"]["impute_gpus"],
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/impute_chunk.py"


rule write_vcf:
    input:
        pieces=chrom_chunks(f"{RESULTS}/impute/{{chrom}}/{{chunk}}.vcf.gz"),
        sidecars=chrom_chunks(f"{RESULTS}/impute/{{chrom}}/{{chunk}}.json"),
        targets=f"{RESULTS}/ingest/{{chrom}}/targets.h5",
        reference=REFERENCE_H5,
    output:
        vcf=f"{RESULTS}/imputed/{{chrom}}.vcf.gz",
        tbi=f"{RESULTS}/imputed/{{chrom}}.vcf.gz.tbi",
    params:
        format_fields=config.get("output", {}).get("format_fields", []),
        gp=config.get("output", {}).get("gp", True),
    log:
        "logs/impute/{chrom}.write_vcf.log",
    benchmark:
        "benchmarks/impute/{chrom}.write_vcf.tsv"
    threads: 1  # copies the pieces' compressed bytes
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/write_vcf.py"


rule imputed_manifest:
    input:
        chromosomes=f"{RESULTS}/ingest/chromosomes.tsv",
        vcfs=per_chrom(f"{RESULTS}/imputed/{{chrom}}.vcf.gz"),
        tbis=per_chrom(f"{RESULTS}/imputed/{{chrom}}.vcf.gz.tbi"),
    output:
        f"{RESULTS}/imputed/chromosomes.tsv",
    log:
        "logs/impute/imputed_manifest.log",
    threads: 1
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/imputed_manifest.py"


rule write_merged_vcf:
    input:
        pieces=all_chunks(f"{RESULTS}/impute/{{chrom}}/{{chunk}}.vcf.gz"),
        sidecars=all_chunks(f"{RESULTS}/impute/{{chrom}}/{{chunk}}.json"),
        targets=per_chrom(f"{RESULTS}/ingest/{{chrom}}/targets.h5"),
        reference=per_chrom(REFERENCE_H5),
    output:
        vcf=MERGED_VCF,
        tbi=f"{MERGED_VCF}.tbi",
    params:
        format_fields=config.get("output", {}).get("format_fields", []),
        gp=config.get("output", {}).get("gp", True),
    log:
        "logs/impute/write_merged_vcf.log",
    benchmark:
        "benchmarks/impute/write_merged_vcf.tsv"
    threads: 1
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/write_vcf.py"
