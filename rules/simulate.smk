# Embedded demo data: msprime + stdpopsim simulation of a reference panel and array targets.


rule simulate:
    output:
        reference=f"{RESULTS}/simulate/reference.vcf.gz",
        reference_tbi=f"{RESULTS}/simulate/reference.vcf.gz.tbi",
        targets=f"{RESULTS}/simulate/targets.vcf.gz",
        targets_tbi=f"{RESULTS}/simulate/targets.vcf.gz.tbi",
        truth=f"{RESULTS}/simulate/truth.vcf.gz",
        truth_tbi=f"{RESULTS}/simulate/truth.vcf.gz.tbi",
        panel=f"{RESULTS}/simulate/panel.tsv",
        # further batches of targets on the same array (simulation.target_batches > 1)
        batches=[batch_path(f"{RESULTS}/simulate/{name}", b) + ext for b in SIMULATED_BATCHES
                 for name in ("targets.vcf.gz", "truth.vcf.gz") for ext in ("", ".tbi")],
    params:
        simulation=config["simulation"],
    log:
        "logs/simulate.log",
    benchmark:
        "benchmarks/simulate.tsv"
    threads: 1
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/simulate.py"
