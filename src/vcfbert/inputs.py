"""Input files given as one file, a ``{chrom}`` pattern, or a list (config keys
``reference_vcf``, ``target_vcf``, ``truth_vcf``, ``genetic_map``).

Reference panels ship one VCF per chromosome (``ALL.chr20.phase3….vcf.gz``); a key may name
them all with a pattern holding ``{chrom}`` (``panel/ALL.chr{chrom}.vcf.gz``), or list them.
:func:`expand` turns any of the three forms into the list of files, at DAG-building time;
:func:`files_by_contig` says which file holds which contig.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable

from .errors import InputError

PLACEHOLDER = "{chrom}"
# the columns of ``ingest/chromosomes.tsv``: which files hold each chromosome
CHROMOSOME_COLUMNS = ["contig", "wildcard", "reference_file", "target_file", "genetic_map_file"]


def expand(spec: str | list[str] | None, key: str) -> list[str]:
    """The files a config value names, in a stable order.

    Args:
        spec: ``""``/None (none), one path, a path with ``{chrom}``, or a list of paths.
        key: the config key (for error messages).

    Raises:
        InputError: a pattern that matches no file, or a listed file that does not exist.
    """
    if not spec:
        return []
    if isinstance(spec, list | tuple):
        files = [str(s) for s in spec]
        missing = [f for f in files if not os.path.exists(f)]
        if missing:
            raise InputError(f"{key}: {missing[0]} does not exist (and {len(missing) - 1} more "
                             "listed files)")
        if len(set(files)) != len(files):
            raise InputError(f"{key}: a file is listed twice")
        return files
    spec = str(spec)
    if PLACEHOLDER not in spec:
        return [spec]
    if spec.count(PLACEHOLDER) != 1:
        raise InputError(f"{key}: {spec!r} must hold {PLACEHOLDER} once")
    files = sorted(glob.glob(glob.escape(spec).replace(glob.escape(PLACEHOLDER), "*")),
                   key=_natural)
    if not files:
        raise InputError(f"{key}: no file matches {spec!r} ({PLACEHOLDER} stands for the "
                         "chromosome, e.g. panel/ALL.chr{chrom}.vcf.gz)")
    return files


def _natural(path: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path)]


def files_by_contig(files: list[str], list_contigs: Callable[[str], list[str]],
                    normalize: Callable[[str], str], key: str) -> dict[str, str]:
    """Normalised contig -> the file holding it.

    Raises:
        InputError: a contig found in two files (the per-chromosome files overlap).
    """
    out: dict[str, str] = {}
    for path in files:
        for contig in list_contigs(path):
            name = normalize(contig)
            if name in out and out[name] != path:
                raise InputError(f"{key}: contig {contig} is in both {out[name]} and {path}; "
                                 "give each chromosome in one file")
            out[name] = path
    return out
