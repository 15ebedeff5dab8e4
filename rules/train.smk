# Training: initial weights, then one sub-DAG per epoch (mask -> keys -> indexes -> epoch).


rule init_model:
    input:
        reference=first_reference,  # the panel's size scales the initial switch rate
    output:
        model=f"{RESULTS}/train/model_init.pt",
        key_encoder=f"{RESULTS}/train/model_init.keys.npz",
    params:
        model=config["model"],
        seed=config["train"]["seed"],
    log:
        "logs/train/init_model.log",
    threads: 1
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/init_model.py"


rule train_epoch:
    input:
        previous=model_before,
        indexes=epoch_indexes,
        masks=epoch_masks,
        final_masks=per_chrom(f"{RESULTS}/masks/{{chrom}}/final.h5"),
        reference=per_chrom(f"{RESULTS}/ingest/{{chrom}}/reference.h5"),
        targets=per_chrom(f"{RESULTS}/ingest/{{chrom}}/targets.h5"),
        windows=per_chrom(f"{RESULTS}/windows/{{chrom}}.tsv"),
        chromosomes=f"{RESULTS}/ingest/chromosomes.tsv",
        split=f"{RESULTS}/train/split.tsv",
    output:
        model=f"{RESULTS}/train/epoch_{{epoch}}/model.pt",
        key_encoder=f"{RESULTS}/train/epoch_{{epoch}}/model.keys.npz",
        metrics=f"{RESULTS}/train/epoch_{{epoch}}/metrics.json",
    wildcard_constraints:
        epoch=r"\d+",
    params:
        # new keys only when set or binding (upgrades keep epochs): vcfbert.rule_params
        train=lambda wildcards: train_epoch_params(config["train"], n_windows=n_windows()),
        device=config["device"],
    log:
        "logs/train/epoch_{epoch}.log",
    benchmark:
        "benchmarks/train/epoch_{epoch}.tsv"
    threads: thread_request(training_threads)
    resources:
        mem_mb=mem_request("train_epoch", epoch_data),
        runtime=720,
        gpu=config["resources"]["train_gpus"],
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/train_epoch.py"


rule select_model:
    input:
        models=expand(f"{RESULTS}/train/epoch_{{epoch}}/model.pt", epoch=range(EPOCHS)),
        metrics=expand(f"{RESULTS}/train/epoch_{{epoch}}/metrics.json", epoch=range(EPOCHS)),
    output:
        model=f"{RESULTS}/train/model.pt",
        key_encoder=f"{RESULTS}/train/model.keys.npz",
        metrics=report(f"{RESULTS}/train/metrics.csv", caption="../workflow/report/metrics.rst",
                       category="Training"),
    log:
        "logs/train/select_model.log",
    threads: 1
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/select_model.py"


rule calibrate_dr2:
    input:
        model=f"{RESULTS}/train/model.pt",
        final_masks=per_chrom(f"{RESULTS}/masks/{{chrom}}/final.h5"),
        reference=per_chrom(f"{RESULTS}/ingest/{{chrom}}/reference.h5"),
        targets=per_chrom(f"{RESULTS}/ingest/{{chrom}}/targets.h5"),
        windows=per_chrom(f"{RESULTS}/windows/{{chrom}}.tsv"),
        chromosomes=f"{RESULTS}/ingest/chromosomes.tsv",
        split=f"{RESULTS}/train/split.tsv",
    output:
        f"{RESULTS}/train/dr2_calibration.json",
    params:
        samples=config["train"]["dr2_calibration_samples"],
        windows=config["train"]["dr2_calibration_windows"],
        copying_states=config["impute"]["copying_states"],
        match_states=config["impute"]["match_states"],
        device=config["device"],
    log:
        "logs/train/calibrate_dr2.log",
    benchmark:
        "benchmarks/train/calibrate_dr2.tsv"
    threads: thread_request(impute_threads)  # batches at once (capped at --cores)
    resources:
        mem_mb=mem_request("calibrate_dr2", training_data),
        runtime=120,
        gpu=config["resources"]["impute_gpus"],
    conda:
        "../envs/vcfbert.yaml"
    script:
        "../scripts/calibrate_dr2.py"
