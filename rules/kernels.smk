# numba's cache filled at the start, at the lowest CPU priority beside the parsing, instead of
# inside the first epoch (vcfbert/kernels.py). Nothing waits for it: a job that starts first
# compiles what it needs itself, as it would without this rule.


rule compile_kernels:
    output:
        f"{RESULTS}/kernels.json",
    log:
        "logs/compile_kernels.log",
    benchmark:
        "benchmarks/compile_kernels.tsv"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=15,
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/compile_kernels.py"
