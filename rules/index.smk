# One FAISS index (+ JSON sidecar with checksum) per (epoch, window): independent shard jobs.


rule build_index:
    input:
        chromosomes=f"{RESULTS}/ingest/chromosomes.tsv",
        key_file=f"{RESULTS}/epochs/{{epoch}}/keys/{{chrom}}/{{window}}.npy",
        key_encoder=key_encoder_before,
    output:
        index=f"{RESULTS}/epochs/{{epoch}}/index/{{chrom}}/{{window}}.faiss",
        sidecar=f"{RESULTS}/epochs/{{epoch}}/index/{{chrom}}/{{window}}.json",
    log:
        "logs/epochs/{epoch}/index/{chrom}.{window}.log",
    benchmark:
        "benchmarks/epochs/{epoch}/index/{chrom}.{window}.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("build_index", key_data),
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/build_index.py"
