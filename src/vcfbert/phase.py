"""Phasing of unphased targets before imputation (rule ``phase_targets``).

The model imputes haplotypes, so targets with unphased heterozygous genotypes are first phased
against the same reference panel with Beagle 5.4 (``impute=false``; Debian package ``beagle``).
Phased targets pass through unchanged. Either way the rule writes a bgzipped, indexed VCF whose
contig names follow the reference's (so ``chr20`` targets meet a ``20`` panel).
"""

from __future__ import annotations

import gzip
import itertools
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import InputError
from .io.vcf import (
    _open,
    _records,
    genotypes,
    list_contigs,
    normalize_contig,
    parsed_records,
    require_gt,
)
from .io.vcf_writer import BgzipVcfWriter

log = logging.getLogger(__name__)


def unphased_samples(path: str | os.PathLike[str], max_records: int | None = None,
                     contig: str | None = None) -> tuple[int, int]:
    """(samples with at least one unphased heterozygous genotype, samples), over every record
    (of ``contig`` when given) or the first ``max_records``."""
    require_gt(path, "target")
    vcf = _open(path)
    try:
        n = len(vcf.samples)
        bad = np.zeros(n, bool)
        records = parsed_records(vcf, path) if contig is None else _records(vcf, str(path),
                                                                             contig)
        for k, rec in enumerate(records):
            if max_records is not None and k >= max_records:
                break
            gt = genotypes(rec, path)
            if gt.shape[1] < 3:
                continue
            het = (gt[:, 0] >= 0) & (gt[:, 1] >= 0) & (gt[:, 0] != gt[:, 1])
            bad |= het & (gt[:, 2] == 0)
        return int(bad.sum()), n
    finally:
        vcf.close()


def _renamed_header(lines: list[str], contigs: list[str], rename: dict[str, str]) -> list[str]:
    """Header lines with the ``##contig`` lines' IDs renamed (``rename``); lines for
    ``contigs`` added after the first line when the header has none."""
    lines = list(lines)
    if not any(line.startswith("##contig=") for line in lines):
        lines[1:1] = [f"##contig=<ID={c}>" for c in contigs]
    out = []
    for line in lines:
        if line.startswith("##contig=<ID="):
            name = line[len("##contig=<ID="):].split(",")[0].rstrip(">")
            line = line.replace(f"ID={name}", f"ID={rename.get(name, name)}", 1)
        out.append(line)
    return out


def _open_binary(path: str | os.PathLike[str]) -> BinaryIO:
    """A VCF's bytes, decompressed when it is gzip or BGZF."""
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")  # noqa: SIM115


def _is_text_vcf(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a VCF as text (plain, gzip or BGZF), not a BCF."""
    with _open_binary(path) as fh:
        return fh.read(16).startswith(b"##fileformat=VCF")


def write_renamed(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                  rename: dict[str, str], contig: str | None = None) -> None:
    """Copy a VCF/BCF (its ``contig`` only, when given) to a bgzipped, indexed VCF with
    contigs renamed (``rename``).

    A text VCF that holds no other contig is copied line by line, its records as they are
    (~3x faster than through htslib, which formats every genotype again); otherwise htslib
    reads it (an index then takes it straight to ``contig``)."""
    contigs = list_contigs(src)
    if _is_text_vcf(src) and (contig is None or contigs == [contig]):
        _copy_text_renamed(src, dst, contigs, rename)
        return
    vcf = _open(src)
    try:
        header = _renamed_header(vcf.raw_header.rstrip("\n").split("\n"), contigs, rename)
        with BgzipVcfWriter(dst) as w:
            w.write_lines(header)
            block = []
            records = parsed_records(vcf, src) if contig is None else _records(vcf, str(src),
                                                                                contig)
            for rec in records:
                line = str(rec).rstrip("\n")
                chrom, rest = line.split("\t", 1)
                block.append(f"{rename.get(chrom, chrom)}\t{rest}")
                if len(block) >= 5000:
                    w.write_lines(block)
                    block = []
            w.write_lines(block)
    finally:
        vcf.close()


def _copy_text_renamed(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                       contigs: list[str], rename: dict[str, str]) -> None:
    """:func:`write_renamed` of a text VCF: its lines copied as bytes (UTF-8 or any other
    header text passes through), the header's ``##contig`` lines and the records' CHROM
    renamed; blank lines dropped (htslib skips them too)."""
    new_names = {old.encode(): new.encode() for old, new in rename.items() if old != new}
    with _open_binary(src) as fh, BgzipVcfWriter(dst) as w:
        header: list[str] = []
        first = b""  # the first record's line (none: the file has no record)
        for line in fh:
            if not line.startswith(b"#"):
                first = line
                break
            # bytes that are not UTF-8 (a Latin-1 header) pass through as they are
            header.append(line.rstrip(b"\r\n").decode("utf-8", "surrogateescape"))
        w.write_bytes("".join(f"{h}\n" for h in _renamed_header(header, contigs, rename))
                      .encode("utf-8", "surrogateescape"))
        block: list[bytes] = []
        for line in itertools.chain([first], fh):
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            chrom, tab, rest = line.partition(b"\t")
            block.append((new_names[chrom] + tab + rest if chrom in new_names else line) + b"\n")
            if len(block) >= 5000:
                w.write_bytes(b"".join(block))
                block = []
        w.write_bytes(b"".join(block))


def phase_targets(*, target_vcf: str, reference_vcf: str, out: str, tool: str,
                  beagle_command: str = "beagle", threads: int = 1, seed: int = 1,
                  reference_contigs: list[str] | None = None, contig: str | None = None) -> bool:
    """Write phased targets (of the reference's ``contig`` only, when given) to ``out``;
    return True when phasing was needed and done.

    ``reference_vcf`` may be empty with a trained panel (``reference_contigs`` then gives the
    contig names to follow); unphased targets then cannot be phased here.
    """
    contigs = list_contigs(reference_vcf) if reference_vcf else list(reference_contigs or [])
    if contig is not None:
        contigs = [contig]
    ref_names = {normalize_contig(c): c for c in contigs}
    target_contigs = list_contigs(target_vcf)
    rename = {c: ref_names.get(normalize_contig(c), c) for c in target_contigs}
    source = None  # the targets' own name of ``contig``
    if contig is not None:
        source = next((c for c in target_contigs
                       if normalize_contig(c) == normalize_contig(contig)), None)
        if source is None:
            raise InputError(f"{target_vcf}: no record on {contig}")
    n_bad, n = unphased_samples(target_vcf, contig=source)
    if n_bad == 0:
        write_renamed(target_vcf, out, rename, contig=source)
        log.info("targets are phased (%d samples): passed through", n)
        return False
    if not reference_vcf and tool != "none":
        raise InputError(f"{target_vcf}: {n_bad} of {n} target samples have unphased "
                         "heterozygous genotypes, and a trained panel holds no VCF to phase "
                         "them against: give the panel's reference as reference_vcf=... (Beagle "
                         "phases against it), or phase the targets first (SHAPEIT5, Eagle)")
    if tool == "none":
        raise InputError(f"{target_vcf}: {n_bad} of {n} target samples have unphased "
                         "heterozygous genotypes; set `phasing.tool: beagle` (needs Beagle 5.4: "
                         "apt-get install beagle) or phase them first (e.g. SHAPEIT5, Eagle)")
    exe = shutil.which(beagle_command.split()[0])
    if exe is None:
        raise InputError(f"{target_vcf}: {n_bad} of {n} target samples are unphased and "
                         f"'{beagle_command}' (Beagle 5.4) is not installed: install it "
                         "(apt-get install beagle) or phase the targets first")
    with tempfile.TemporaryDirectory(dir=Path(out).parent) as tmp:
        renamed = Path(tmp) / "targets.vcf.gz"
        write_renamed(target_vcf, renamed, rename, contig=source)
        prefix = Path(tmp) / "phased"
        cmd = [*beagle_command.split(), f"gt={renamed}", f"ref={reference_vcf}",
               f"out={prefix}", "impute=false", f"nthreads={threads}", f"seed={seed}"]
        if contig is not None:
            cmd.append(f"chrom={contig}")
        log.info("phasing %d of %d samples: %s", n_bad, n, " ".join(cmd))
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0 or not Path(f"{prefix}.vcf.gz").exists():
            tail = (res.stdout + res.stderr).strip().splitlines()[-3:]
            raise InputError(f"Beagle could not phase {target_vcf}: {' | '.join(tail)}")
        # re-write through our writer: atomic, bgzipped, tabix-indexed
        write_renamed(f"{prefix}.vcf.gz", out, {})
    return True
