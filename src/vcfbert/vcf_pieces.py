"""The imputed VCF in pieces: each imputation job writes the finished records of its own
windows, and the chromosome's VCF is a header followed by those pieces, byte for byte.

An imputation job (``results/impute/{chrom}/{chunk}``) holds every target sample for a run
of consecutive window cores, so it has all it needs to write their final records: the
observed alleles put back at typed sites, INFO/ER2 from the leave-one-out probabilities,
INFO/DR2 (recalibrated when a calibration is given) and every FORMAT cell. It writes them as a
BGZF file without a header (``{chunk}.vcf.gz``, a whole number of BGZF members and the EOF
member) and a JSON sidecar (``{chunk}.json``: the variant range, the samples, the FORMAT
fields, the piece's size and SHA-256, and for the tabix index each record's length in bytes
and REF allele's length and each BGZF member's size). Formatting and compression so run in the
parallel imputation jobs (on a cluster, on as many nodes); what is left for the chromosome is
:func:`vcfbert.impute.write_vcf`: check that the pieces tile its variants once, with the same
samples and fields, write the header and copy the pieces' compressed bytes (no
decompression), and the index from the sidecars (:mod:`vcfbert.io.tabix`; nothing read back).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .atomic import atomic_path, sha256_file, write_text_atomic
from .errors import IntegrityError

if TYPE_CHECKING:
    from .calibration import Recalibration
    from .imputed_vcf import ChromosomeDosages
    from .io.h5store import TargetSet
    from .io.vcf_writer import BgzipVcfWriter

T = TypeVar("T")
PIECE_FORMAT = "vcfbert-imputed-vcf-piece"
PIECE_VERSION = 2  # 2: the tabix index's record and member sizes


def sidecar_path(piece: str | os.PathLike[str]) -> Path:
    """``c0000.json`` beside ``c0000.vcf.gz``."""
    p = Path(piece)
    name = p.name[:-len(".vcf.gz")] if p.name.endswith(".vcf.gz") else p.stem
    return p.with_name(f"{name}.json")


def samples_digest(samples: list[str]) -> str:
    """SHA-256 of the sample names in order (pieces of one VCF must agree on it)."""
    return hashlib.sha256("\n".join(samples).encode("utf-8")).hexdigest()


def core_dosages(contig: str, table: dict[str, np.ndarray], targets: TargetSet,
                 called: np.ndarray, lo: int, hi: int, probs: np.ndarray, loo: np.ndarray,
                 loo_cols: np.ndarray, calibration: Recalibration | None,
                 table_start: int = 0) -> ChromosomeDosages:
    """What the writer needs for reference variants ``lo:hi`` (one window's core).

    Args:
        contig: the contig name written in the records.
        table: the reference's variant table (:func:`vcfbert.io.h5store.read_variant_table`)
            from variant ``table_start`` on (0: the whole chromosome's; an imputation job
            reads its chunk's rows only).
        targets: the aligned targets (``haplotypes`` int8 [2T, M] at their M sites).
        called: bool [M] target sites with a called allele (``targets.site_called``).
        probs: float32 [2T, hi - lo] imputed ALT probabilities; the observed alleles are put
            back at typed sites in place.
        loo: float32 [2T, j] leave-one-out ALT probabilities at target sites ``loo_cols``
            int [j] (indices into the M target sites); target sites of the core without one
            get no ER2.
        calibration: the DR2 recalibration, or None (the writer then computes DR2 from the
            probabilities, as for typed variants).

    Returns:
        the :class:`vcfbert.imputed_vcf.ChromosomeDosages` of the core: INFO/ER2 at typed
        variants, INFO/DR2 recalibrated at untyped ones (NaN elsewhere).
    """
    from .calibration import conditional_dr2, dr2_sums
    from .imputed_vcf import ChromosomeDosages, empirical_r2, empirical_r2_sums

    n = hi - lo
    rows = slice(lo - table_start, hi - table_start)
    if rows.start < 0 or rows.stop > table["position"].shape[0]:
        raise ValueError(f"variants {lo}:{hi} are not in the table of variants "
                         f"{table_start}:{table_start + table['position'].shape[0]}")
    cols = targets.variant_ref_index
    a, b = (int(x) for x in np.searchsorted(cols, [lo, hi]))
    at = cols[a:b] - lo
    obs = targets.haplotypes[:, a:b]
    probs[:, at] = np.where(obs >= 0, obs.astype(np.float32), probs[:, at])
    typed = np.zeros(n, bool)
    typed[at] = called[a:b]
    core = ChromosomeDosages(contig=contig, position=table["position"][rows],
                             alleles=table["alleles"][rows], ids=table["ids"][rows],
                             hap_prob=probs, typed=typed,
                             haploid_samples=targets.sample_haploid,
                             haploid_variants=table["haploid"][rows], er2=np.full(n, np.nan))
    male, haploid = core.haploid_cells(0, n)  # as the writer writes the cells
    if b > a:
        loo_core = np.full((obs.shape[0], b - a), np.nan, np.float32)
        inside = (loo_cols >= a) & (loo_cols < b)
        loo_core[:, loo_cols[inside] - a] = loo[:, inside]
        sums = empirical_r2_sums(loo_core, obs, male, haploid[at])
        core.er2[at] = np.where(called[a:b], empirical_r2(sums), np.nan)
    if calibration is not None:
        core.dr2 = calibration.apply(conditional_dr2(dr2_sums(probs, male, haploid)),
                                     table["af"][rows])
        core.dr2[typed] = np.nan
    return core


def write_piece(out: str | os.PathLike[str], cores: Iterable[T],
                prepare: Callable[[T], ChromosomeDosages], *, contig: str, core_start: int,
                core_end: int, samples: list[str], window_ids: list[str],
                format_fields: tuple[str, ...] | list[str] = (),
                dr2_recalibrated: bool = False, threads: int = 1, gp: bool = True) -> Piece:
    """Write the records of consecutive cores (variants ``core_start:core_end`` of
    ``contig``, in order) into the piece ``out`` (atomically), then its sidecar; returns what
    the sidecar says.

    ``cores`` yields one item per core (e.g. the model's predictions, computed as the
    iterator advances); ``prepare`` turns an item into the core's
    :class:`vcfbert.imputed_vcf.ChromosomeDosages`. Preparing and formatting a core run on
    a thread of their own while the iterator computes the next one (at most one core waits;
    its records formatted ``threads`` blocks at a time, so that the last core, which nothing
    else runs beside, takes less), and the BGZF blocks are compressed on ``threads`` threads
    behind them: the imputation never stops for the writing. ``gp``: the cells have GP.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    from .imputed_vcf import check_format_fields, write_records
    from .io.bgzf import BgzfWriter
    from .io.tabix import pack_uint32

    extra = check_format_fields(list(format_fields))
    lengths: list[np.ndarray] = [np.zeros(0, np.int64)]  # each core's record lengths (bytes)
    ref_lengths: list[np.ndarray] = [np.zeros(0, np.int64)]  # ... and REF allele lengths

    def format_core(item: T) -> None:
        dosages = prepare(item)
        n = int(dosages.position.shape[0])
        lengths.append(np.empty(n, np.int64))
        ref_lengths.append(np.fromiter((len(a) for a in dosages.alleles[:, 0]), np.int64, n))
        write_records(writer.write, dosages, extra, lengths=lengths[-1], threads=threads, gp=gp)

    with atomic_path(out) as tmp:
        with BgzfWriter(tmp, threads=threads) as writer, \
                ThreadPoolExecutor(1, thread_name_prefix="piece") as pool:
            pending: Future | None = None
            for item in cores:
                if pending is not None:
                    pending.result()
                pending = pool.submit(format_core, item)
                del item  # freed once formatted, not kept while the next core is computed
            if pending is not None:
                pending.result()
        record_bytes = np.concatenate(lengths)
        if record_bytes.size != core_end - core_start:
            raise ValueError(f"{record_bytes.size} records written for variants "
                             f"{core_start}:{core_end}")
        members = np.array(writer.members, np.int64).reshape(-1, 2)
        if record_bytes.sum() != members[:, 1].sum():
            raise ValueError(f"{out}: the records' sizes do not add up to the text written")
    piece = Piece(path=Path(out), contig=contig, core_start=int(core_start),
                  core_end=int(core_end), samples_sha256=samples_digest(samples),
                  n_samples=len(samples), format_fields=list(extra),
                  dr2_recalibrated=bool(dr2_recalibrated),
                  piece_bytes=os.path.getsize(out), piece_sha256=sha256_file(out),
                  window_ids=list(window_ids), record_bytes=pack_uint32(record_bytes),
                  ref_lengths=pack_uint32(np.concatenate(ref_lengths)),
                  members=pack_uint32(members.ravel()), gp=bool(gp))
    write_sidecar(piece)
    return piece


@dataclasses.dataclass
class Piece:
    """One piece and what its sidecar says about it."""

    path: Path
    contig: str
    core_start: int
    core_end: int
    samples_sha256: str
    n_samples: int
    format_fields: list[str]
    dr2_recalibrated: bool
    piece_bytes: int
    piece_sha256: str
    window_ids: list[str]
    record_bytes: str  # each record's length in bytes (vcfbert.io.tabix.pack_uint32)
    ref_lengths: str  # each record's REF allele length (its span on the contig), packed
    members: str  # each BGZF member's compressed and text size, in pairs, packed
    gp: bool = True  # the cells have GP (sidecars written before output.gp existed: always)

    def tabix_records(self, contig_position: np.ndarray, file_offset: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The piece's records for a tabix index when its members start at ``file_offset``
        of a file: (0-based start, exclusive end, virtual offset, virtual offset after it),
        from the sidecar's sizes and ``contig_position`` int [variants of the contig]."""
        from .io.tabix import unpack_uint32, virtual_offsets

        record_bytes = unpack_uint32(self.record_bytes)
        ref_lengths = unpack_uint32(self.ref_lengths)
        members = unpack_uint32(self.members).reshape(-1, 2)
        n = self.core_end - self.core_start
        if record_bytes.size != n or ref_lengths.size != n or \
                record_bytes.sum() != members[:, 1].sum():
            raise IntegrityError(f"{self.path}: its sidecar's record sizes do not fit its "
                                 f"{n} records; delete it and re-run the workflow")
        ends = np.cumsum(record_bytes)
        beg = np.asarray(contig_position[self.core_start:self.core_end], np.int64) - 1
        return (beg, beg + ref_lengths, virtual_offsets(ends - record_bytes, members,
                                                        file_offset),
                virtual_offsets(ends, members, file_offset))

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "path"}


def write_sidecar(piece: Piece) -> None:
    """The JSON sidecar of a finished piece (written after it)."""
    write_text_atomic(sidecar_path(piece.path), json.dumps(
        {"format": PIECE_FORMAT, "format_version": PIECE_VERSION, **piece.fields()},
        indent=1, sort_keys=True) + "\n")


def read_piece(path: str | os.PathLike[str]) -> Piece:
    """A piece with its sidecar; IntegrityError when the sidecar is missing or foreign."""
    side = sidecar_path(path)
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        raise IntegrityError(f"{side}: unreadable sidecar of {path} ({e}); delete both and "
                             "re-run the workflow to impute that chunk again") from e
    if meta.get("format") != PIECE_FORMAT or meta.get("format_version") != PIECE_VERSION:
        raise IntegrityError(f"{side}: not a vcfbert {PIECE_FORMAT} v{PIECE_VERSION} sidecar; "
                             "delete results/impute and re-run the workflow")
    names = [f.name for f in dataclasses.fields(Piece) if f.name != "path"]
    return Piece(path=Path(path), **{k: meta[k] for k in names if k != "gp"},
                 gp=bool(meta.get("gp", True)))


def check_tiling(contig: str, n_variants: int, pieces: list[Piece]) -> list[Piece]:
    """The pieces of one chromosome in order; IntegrityError unless they cover its
    ``n_variants`` variants exactly once."""
    ordered = sorted(pieces, key=lambda p: p.core_start)
    at = 0
    for p in ordered:
        if p.contig != contig:
            raise IntegrityError(f"{p.path}: a piece of {p.contig}, given for {contig}")
        if p.core_start != at:
            raise IntegrityError(f"{contig}: the imputed chunks do not cover every variant "
                                 f"exactly once ({p.path} starts at variant {p.core_start}, "
                                 f"expected {at}); delete results/impute/ and re-run")
        at = p.core_end
    if at != n_variants:
        raise IntegrityError(f"{contig}: the imputed chunks do not cover every variant exactly "
                             f"once (they end at variant {at} of {n_variants}); delete "
                             "results/impute/ and re-run")
    return ordered


def copy_piece(piece: Piece, writer: BgzipVcfWriter, chunk: int = 1 << 20) -> int:
    """Append the piece's BGZF members (all but its EOF member) to ``writer``, checking its
    size and SHA-256 against the sidecar on the way; returns the file offset of its first
    member."""
    from .io.bgzf import EOF_BLOCK

    size = piece.path.stat().st_size
    if size != piece.piece_bytes:
        raise IntegrityError(f"{piece.path}: {size} bytes, its sidecar says "
                             f"{piece.piece_bytes}; delete it and re-run the workflow")
    digest = hashlib.sha256()
    body = size - len(EOF_BLOCK)
    start = writer.write_members(b"")  # where the members go
    with open(piece.path, "rb") as fh:
        left = body
        while left > 0:
            data = fh.read(min(chunk, left))
            if not data:
                break
            digest.update(data)
            writer.write_members(data)
            left -= len(data)
        tail = fh.read()
    digest.update(tail)
    if tail != EOF_BLOCK or digest.hexdigest() != piece.piece_sha256:
        raise IntegrityError(f"{piece.path}: does not match its sidecar (truncated or "
                             "changed); delete it and re-run the workflow")
    return start
