# Windows (data-dependent count: a checkpoint), sample split and per-epoch masks.


checkpoint define_windows:
    input:
        reference=f"{RESULTS}/ingest/{{chrom}}/reference.h5",
        targets=f"{RESULTS}/ingest/{{chrom}}/targets.h5",
    output:
        f"{RESULTS}/windows/{{chrom}}.tsv",
    params:
        core_sites=config["windows"]["core_sites"],
        flank_sites=config["windows"]["flank_sites"],
    log:
        "logs/windows/{chrom}.log",
    benchmark:
        "benchmarks/windows/{chrom}.tsv"
    threads: 1
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/define_windows.py"


rule split_samples:
    input:
        reference=first_reference,
    output:
        f"{RESULTS}/train/split.tsv",
    params:
        val_fraction=config["train"]["val_fraction"],
        seed=config["train"]["seed"],
    log:
        "logs/train/split_samples.log",
    threads: 1
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/split_samples.py"


rule refresh_mask:
    input:
        chromosomes=f"{RESULTS}/ingest/chromosomes.tsv",
        targets=f"{RESULTS}/ingest/{{chrom}}/targets.h5",
    output:
        f"{RESULTS}/masks/{{chrom}}/{{epoch}}.h5",
    params:
        drop_fraction=config["mask"]["drop_fraction"],
    log:
        "logs/masks/{chrom}.{epoch}.log",
    threads: 1
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/refresh_mask.py"
