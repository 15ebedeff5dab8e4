"""The testing hook that fails named jobs on purpose (``VCFBERT_INJECT_FAILURE``)."""

from __future__ import annotations

import pytest

from vcfbert.steps import inject_failure

JOB = {"epoch": 0, "window_id": "w0001", "contig": "20"}


def test_no_variable_fails_nothing(monkeypatch):
    monkeypatch.delenv("VCFBERT_INJECT_FAILURE", raising=False)
    inject_failure("build_index", JOB)


@pytest.mark.parametrize("spec", ["build_index:epoch=0,window_id=w0001", "build_index",
                                  "compile_kernels;build_index:window_id=w0001",
                                  "build_index:window_id=w0009; build_index:epoch=0"])
def test_a_spec_naming_the_job_fails_it(monkeypatch, spec):
    monkeypatch.setenv("VCFBERT_INJECT_FAILURE", spec)
    with pytest.raises(RuntimeError, match="failure injected on purpose"):
        inject_failure("build_index", JOB)


@pytest.mark.parametrize("spec", ["build_index:window_id=w0002", "compile_kernels",
                                  "build_index_x:epoch=0", "encode;build_index:epoch=1", ""])
def test_a_spec_naming_other_jobs_leaves_this_one(monkeypatch, spec):
    monkeypatch.setenv("VCFBERT_INJECT_FAILURE", spec)
    inject_failure("build_index", JOB)


def test_the_message_names_the_matching_spec(monkeypatch):
    monkeypatch.setenv("VCFBERT_INJECT_FAILURE", "compile_kernels;build_index:epoch=0")
    with pytest.raises(RuntimeError, match=r"\(compile_kernels\)"):
        inject_failure("compile_kernels", {})
