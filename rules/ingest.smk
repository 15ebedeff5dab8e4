# Parsing: reference VCF -> HDF5 store per chromosome; targets aligned to it, with QC.


checkpoint list_chromosomes:
    input:
        reference=REFERENCE_FILES,
        targets=TARGET_FILES,
        # a trained panel's files are checked here (size, SHA-256), before any job reads them
        trained_panel=PANEL_MANIFEST or [],
    output:
        f"{RESULTS}/ingest/chromosomes.tsv",
    params:
        trained_panel=TRAINED_PANEL,
        genetic_map=GENETIC_MAP,
        chromosomes=[str(c) for c in config.get("chromosomes") or []],
    log:
        "logs/ingest/list_chromosomes.log",
    benchmark:
        "benchmarks/ingest/list_chromosomes.tsv"
    threads: 1
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/list_chromosomes.py"


rule parse_reference:
    input:
        vcf=chromosome_file("reference_file"),
        targets=chromosome_file("target_file"),
        chromosomes=f"{RESULTS}/ingest/chromosomes.tsv",
        panel=PANEL or [],
        genetic_map=chromosome_file("genetic_map_file"),
    output:
        f"{RESULTS}/ingest/{{chrom}}/reference.h5",
    params:
        multiallelic=config["ingest"]["multiallelic"],
        overlap=config["ingest"]["overlapping_samples"],
    log:
        "logs/ingest/{chrom}.parse_reference.log",
    benchmark:
        "benchmarks/ingest/{chrom}.parse_reference.tsv"
    threads: 1
    resources:
        mem_mb=mem_request("parse_reference", reference_block_data),
        runtime=120,
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/parse_reference.py"


rule phase_targets:
    input:
        chromosomes=f"{RESULTS}/ingest/chromosomes.tsv",
        targets=chromosome_file("target_file"),
        reference=chromosome_file("reference_file"),
    output:
        vcf=f"{RESULTS}/phase/{{chrom}}.vcf.gz",
        tbi=f"{RESULTS}/phase/{{chrom}}.vcf.gz.tbi",
    params:
        reference_contigs=PANEL_CONTIGS,
        tool=config["phasing"]["tool"],
        beagle=config["phasing"]["beagle_command"],
    log:
        "logs/phase/{chrom}.phase_targets.log",
    benchmark:
        "benchmarks/phase/{chrom}.phase_targets.tsv"
    threads: thread_request(phasing_threads)
    resources:
        mem_mb=phasing_mem,
        runtime=240,
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/phase_targets.py"


rule parse_targets:
    input:
        chromosomes=f"{RESULTS}/ingest/chromosomes.tsv",
        vcf=f"{RESULTS}/phase/{{chrom}}.vcf.gz",
        reference=REFERENCE_H5,
        array=ARRAY_SITES or [],  # with a trained panel: its array
        panel=PANEL or [],  # its sex column, when there is one, declares males
    output:
        targets=f"{RESULTS}/ingest/{{chrom}}/targets.h5",
        qc_sites=f"{RESULTS}/qc/{{chrom}}.sites.tsv",
        qc_samples=f"{RESULTS}/qc/{{chrom}}.samples.tsv",
    params:
        multiallelic=config["ingest"]["multiallelic"],
        min_call_rate=config["ingest"]["min_call_rate"],
        max_missing=config["impute"].get("max_missing_array_fraction", 0.2),
    log:
        "logs/ingest/{chrom}.parse_targets.log",
    benchmark:
        "benchmarks/ingest/{chrom}.parse_targets.tsv"
    threads: 1
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/parse_targets.py"
