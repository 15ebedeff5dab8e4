# vcfbert: genotype imputation with a retrieval-augmented transformer.
# Table of contents only; each stage lives in rules/<stage>.smk, its logic in src/vcfbert.
import os

from snakemake.utils import min_version

min_version("9.0")


# config/config.yaml of the working directory when there is one, else the workflow's own
CONFIGFILE = "config/config.yaml"
if not os.path.exists(CONFIGFILE):
    CONFIGFILE = os.path.join(workflow.basedir, "config", "config.yaml")


configfile: CONFIGFILE


include: "rules/common.smk"
include: "rules/simulate.smk"
include: "rules/kernels.smk"
include: "rules/ingest.smk"
include: "rules/windows.smk"
include: "rules/encode.smk"
include: "rules/index.smk"
include: "rules/train.smk"
include: "rules/impute.smk"
include: "rules/evaluate.smk"
include: "rules/panel.smk"


rule all:
    input:
        final_outputs,
    default_target: True
