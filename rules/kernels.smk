# numba's cache filled at the start, at the lowest CPU priority beside the parsing, instead of
# inside the first epoch (vcfbert/kernels.py). Nothing waits for it: a job that starts first
# compiles what it needs itself, as it would without this rule, unless this job is compiling
# that very kernel on the same machine right then (a lock file per kernel): then the job waits
# for it rather than compile a second copy beside it. Run locally it takes no core
# from Snakemake's count (threads 0): at nice 19 it only uses what the other jobs leave, and
# holding one of a laptop's cores made the jobs after the parsing run one at a time. A
# cluster job asks for one core (sbatch refuses --cpus-per-task=0).


rule compile_kernels:
    output:
        f"{RESULTS}/kernels.json",
    log:
        "logs/compile_kernels.log",
    benchmark:
        "benchmarks/compile_kernels.tsv"
    threads: side_job_threads
    resources:
        mem_mb=1500,
        runtime=15,
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/compile_kernels.py"
