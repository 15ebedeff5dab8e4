"""bench/kernel_sections.py: its cut points still exist in the kernel's source.

The script finds where to cut the copying kernel by comments and statements of its source; a
kernel rewrite that drops one of them made the script stop with "kernel source changed", which
went unnoticed for a session (the partial rows of 7306d40 removed two of its markers)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import vcfbert.model.copy_kernel as ck

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("kernel_sections",
                                                  ROOT / "bench/kernel_sections.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_cut_and_the_head_call_are_found_once_in_the_kernel():
    sections = _module()
    source = Path(ck.__file__).read_text()
    markers = [marker for _, marker, _ in sections.CUTS] + [sections.HEAD_CALL]
    missing = [m.strip()[:60] for m in markers if source.count(m) != 1]
    assert not missing, f"bench/kernel_sections.py cuts not found once in copy_kernel.py: {missing}"
    # in the kernel's order, so that each row adds one section to the one above
    places = [source.index(m) for _, m, _ in sections.CUTS]
    assert places == sorted(places)


def test_every_cut_copy_of_the_kernel_is_valid_python():
    """A cut inserted at the wrong indentation made every copy a syntax error (the head's call
    moved into an if/else in 87bdd5f); the marker test above could not see it."""
    sections = _module()
    cuts = sections.cut_sources(Path(ck.__file__).read_text())
    assert len(cuts) == len(sections.CUTS) + 2
    for label, source in cuts.items():
        compile(source, f"copy_kernel ({label})", "exec")
    assert "continue\n" + sections.HEAD_CALL in cuts["+ ALT sites (whole kernel, no head)"]
