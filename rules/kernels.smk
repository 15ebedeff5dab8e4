# The numba kernels compiled once, beside the parsing (a fresh install's first training epoch
# paid ~9 s for them otherwise), before training and imputation load them from the cache.

KERNELS = f"{RESULTS}/kernels/compiled.json"


rule compile_kernels:
    output:
        KERNELS,
    log:
        "logs/kernels/compile_kernels.log",
    benchmark:
        "benchmarks/kernels/compile_kernels.tsv"
    threads: 1
    priority: -1  # after the parsing jobs, on a core they leave idle
    resources:
        mem_mb=mem_request("compile_kernels", lambda wildcards, input: 0.0),
        runtime=10,
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/compile_kernels.py"
