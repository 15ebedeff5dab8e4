# Pre-encoding: retrieval keys of every reference haplotype, per (epoch, window).


rule encode:
    input:
        chromosomes=f"{RESULTS}/ingest/chromosomes.tsv",
        key_encoder=key_encoder_before,
        reference=f"{RESULTS}/ingest/{{chrom}}/reference.h5",
        targets=f"{RESULTS}/ingest/{{chrom}}/targets.h5",
        windows=f"{RESULTS}/windows/{{chrom}}.tsv",
        mask=f"{RESULTS}/masks/{{chrom}}/{{epoch}}.h5",
    output:
        temp(f"{RESULTS}/epochs/{{epoch}}/keys/{{chrom}}/{{window}}.npy"),
    log:
        "logs/epochs/{epoch}/encode/{chrom}.{window}.log",
    benchmark:
        "benchmarks/epochs/{epoch}/encode/{chrom}.{window}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("encode", window_data),
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/encode.py"
