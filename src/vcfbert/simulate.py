"""Simulated human-like data for the demo and the benchmarks (msprime + stdpopsim).

Writes what a user would bring: a phased reference VCF, a target VCF at "array" sites
(common variants thinned to about one per ``array_spacing`` bp), the targets' truth VCF at every
reference variant, and a panel TSV (sample, population, role, batch). With ``target_batches``
> 1, further batches of targets on the same array (other individuals of the same simulation)
go to ``targets.batch<b>.vcf.gz`` / ``truth.batch<b>.vcf.gz`` beside the first: new samples
for a trained panel. Everything follows from the seed: the same parameters give
byte-identical files. With ``genetic_map`` (a real PLINK or HapMap map; the scenarios of
``bench/`` only) recombination follows that map over ``[map_start, map_start + length)``, and
the region's map is written beside the VCFs as ``genetic_map.map`` (PLINK, VCF coordinates).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import InputError
from .io.vcf_writer import BgzipVcfWriter, base_header, column_header, genotype_cells

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SimulationConfig:
    """Parameters of one simulated scenario (see ``config/config.yaml``: ``simulation``)."""

    model: str = "OutOfAfrica_3G09"
    reference_samples: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"YRI": 200, "CEU": 200, "CHB": 200})
    target_samples: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"YRI": 20, "CEU": 20, "CHB": 20})
    length: int = 1_000_000
    contig: str = "20"
    seed: int = 1
    array_spacing: int = 3000
    array_min_maf: float = 0.05
    target_phased: bool = True
    genotype_error: float = 0.0
    missing_rate: float = 0.0
    target_batches: int = 1
    genetic_map: str = ""      # a real map (PLINK or HapMap) to simulate with, "" = uniform
    map_contig: str = ""       # its contig
    map_start: int = 0         # the simulated region is [map_start, map_start + length)
    male_fraction: float = 0.0  # chrX: this share of samples is male, written haploid

    def __post_init__(self) -> None:
        if self.length < 10_000:
            raise InputError(f"simulation.length must be at least 10000 bp, not {self.length}")
        for role, d in (("reference_samples", self.reference_samples),
                        ("target_samples", self.target_samples)):
            if not d or any(int(n) < 0 for n in d.values()):
                raise InputError(f"simulation.{role} must map populations to sample counts")
        if int(self.target_batches) < 1:
            raise InputError("simulation.target_batches must be at least 1")


@dataclasses.dataclass
class SimulatedPaths:
    reference_vcf: str
    target_vcf: str
    truth_vcf: str
    panel: str


def batch_path(path: str, batch: int) -> str:
    """File of target batch ``batch`` (1-based): ``targets.vcf.gz`` for the first,
    ``targets.batch2.vcf.gz`` for the second, and so on."""
    if batch == 1:
        return path
    for ext in (".vcf.gz", ".vcf", ".bcf"):
        if path.endswith(ext):
            return f"{path[:-len(ext)]}.batch{batch}{ext}"
    return f"{path}.batch{batch}"


def _simulate_ts(cfg: SimulationConfig):
    import stdpopsim

    species = stdpopsim.get_species("HomSap")
    try:
        model = species.get_demographic_model(cfg.model)
    except ValueError as exc:
        raise InputError(f"simulation.model: {exc}") from exc
    known = {p.name for p in model.populations}
    pops = sorted(set(cfg.reference_samples) | set(cfg.target_samples))
    unknown = [p for p in pops if p not in known]
    if unknown:
        raise InputError(f"simulation: populations {unknown} are not in {cfg.model} "
                         f"(it has {sorted(known)})")
    if cfg.genetic_map:
        import stdpopsim as sp

        contig = sp.Contig(recombination_map=region_rate_map(cfg),
                           mutation_rate=model.mutation_rate)
    else:
        contig = species.get_contig(length=cfg.length, mutation_rate=model.mutation_rate)
    samples = {p: int(cfg.reference_samples.get(p, 0))
               + int(cfg.target_samples.get(p, 0)) * int(cfg.target_batches) for p in pops}
    engine = stdpopsim.get_engine("msprime")
    return engine.simulate(model, contig, {p: n for p, n in samples.items() if n > 0},
                           seed=cfg.seed)


def region_map_points(cfg: SimulationConfig) -> tuple[np.ndarray, np.ndarray]:
    """(bp [P] from 0 to ``length``, cM [P] from 0) of the map over the simulated region:
    the map's points inside it plus its two ends (interpolated)."""
    from .genetic_map import read_genetic_map

    gmap = read_genetic_map(cfg.genetic_map, cfg.map_contig or cfg.contig)
    lo, hi = float(cfg.map_start), float(cfg.map_start + cfg.length)
    inside = gmap.bp[(gmap.bp > lo) & (gmap.bp < hi)]
    bp = np.concatenate([[lo], inside, [hi]])
    cm = gmap.centimorgans(bp)
    return bp - lo, cm - cm[0]


def region_rate_map(cfg: SimulationConfig):
    """msprime RateMap (per bp per generation) of the simulated region from the real map."""
    import msprime

    bp, cm = region_map_points(cfg)
    rate = np.diff(cm) / 100.0 / np.diff(bp)  # cM -> Morgans, per bp
    return msprime.RateMap(position=bp, rate=rate)


def write_plink_map(cfg: SimulationConfig, path: str) -> None:
    """The simulated region's map in PLINK format (chrom id cM bp), on the VCFs' coordinates
    (bp + 1), for Beagle's ``map=`` and vcfbert's ``genetic_map``."""
    bp, cm = region_map_points(cfg)
    lines = [f"{cfg.contig}\t.\t{c:.8f}\t{int(b) + 1}" for b, c in zip(bp, cm, strict=True)]
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


def simulate(cfg: SimulationConfig, out: SimulatedPaths) -> dict[str, int]:
    """Run the simulation and write the four files of ``out``; return summary counts."""
    import pandas as pd  # here, not at the top: the Snakemake process imports this module

    ts = _simulate_ts(cfg)
    rng = np.random.default_rng(cfg.seed)
    pop_names = {p.id: (p.metadata or {}).get("name", str(p.id)) for p in ts.populations()}
    # Individuals by population, split into reference and targets at random.
    ref_ind: list[tuple[str, int]] = []
    tgt_ind: list[tuple[str, int]] = []
    tgt_batch: list[int] = []
    by_pop: dict[str, list[int]] = {}
    for ind in ts.individuals():
        pop = pop_names[ts.node(ind.nodes[0]).population]
        by_pop.setdefault(pop, []).append(ind.id)
    for pop in sorted(by_pop):
        ids = np.array(by_pop[pop])
        rng.shuffle(ids)
        n_ref = int(cfg.reference_samples.get(pop, 0))
        n_tgt = int(cfg.target_samples.get(pop, 0))
        ref_ind += [(pop, int(i)) for i in ids[:n_ref]]
        tgt_ind += [(pop, int(i)) for i in ids[n_ref:]]
        tgt_batch += [1 + k // max(1, n_tgt) for k in range(ids.size - n_ref)]

    def names(rows: list[tuple[str, int]], tag: str) -> list[str]:
        counters: dict[str, int] = {}
        out_names = []
        for pop, _ in rows:
            counters[pop] = counters.get(pop, 0) + 1
            out_names.append(f"{pop}_{tag}{counters[pop]:04d}")
        return out_names

    ref_names, tgt_names = names(ref_ind, "R"), names(tgt_ind, "T")
    # targets ordered by batch (batch 1 first), so that each batch is one block of nodes
    order = np.argsort(np.asarray(tgt_batch, np.int64), kind="stable")
    tgt_ind = [tgt_ind[i] for i in order]
    tgt_names = [tgt_names[i] for i in order]
    tgt_batch = [tgt_batch[i] for i in order]
    hap_batch = np.repeat(np.asarray(tgt_batch, np.int64), 2)  # [2 * targets]
    batches = range(1, int(cfg.target_batches) + 1)
    ref_nodes = np.array([n for _, i in ref_ind for n in ts.individual(i).nodes], np.int32)
    tgt_nodes = np.array([n for _, i in tgt_ind for n in ts.individual(i).nodes], np.int32)

    # chrX (male_fraction > 0): males are written with their first haplotype only
    male_rng = np.random.default_rng([cfg.seed, 23])
    ref_male = male_rng.random(len(ref_ind)) < cfg.male_fraction
    tgt_male = male_rng.random(len(tgt_ind)) < cfg.male_fraction
    positions = (ts.tables.sites.position.astype(np.int64) + 1)
    # pass 1: per-site allele counts in the reference panel (no genotype matrix is held)
    n_sites = ts.num_sites
    n_alleles = np.zeros(n_sites, np.int64)
    ref_ac = np.zeros(n_sites, np.int64)
    alleles: list[tuple[str, ...]] = []
    for var in ts.variants(samples=ref_nodes, copy=False):
        n_alleles[var.site.id] = len([a for a in var.alleles if a is not None])
        ref_ac[var.site.id] = int(np.count_nonzero(var.genotypes == 1))
        alleles.append(var.alleles)
    keep = (n_alleles == 2)
    # keep sites polymorphic in the reference panel, de-duplicated by position
    keep &= (ref_ac > 0) & (ref_ac < ref_nodes.size)
    _, first = np.unique(positions, return_index=True)
    uniq = np.zeros_like(keep)
    uniq[first] = True
    keep &= uniq
    sites = np.flatnonzero(keep)
    if sites.size == 0:
        raise InputError("simulation produced no polymorphic site; increase simulation.length")
    ref_af = ref_ac[sites] / ref_nodes.size
    maf = np.minimum(ref_af, 1 - ref_af)

    # array sites: common variants thinned to one per array_spacing bp (random within a bin)
    eligible = sites[maf >= cfg.array_min_maf]
    bins = (positions[eligible] - 1) // cfg.array_spacing
    array_sites = []
    for b in np.unique(bins):
        members = eligible[bins == b]
        array_sites.append(int(rng.choice(members)))
    array_sites = np.array(sorted(array_sites))
    if array_sites.size < 2:
        raise InputError("simulation produced fewer than 2 array sites; increase "
                         "simulation.length or lower simulation.array_min_maf")

    contigs = [(cfg.contig, cfg.length + 1)]
    fmt = ['##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">']

    def open_vcf(path: str, samples: list[str]) -> BgzipVcfWriter:
        w = BgzipVcfWriter(path)
        w.write_lines(base_header(contigs, source="vcfbert simulate (msprime/stdpopsim "
                                                   f"{cfg.model}, seed {cfg.seed})"))
        w.write_lines(fmt)
        w.write_lines([column_header(samples)])
        return w

    def write_records(w: BgzipVcfWriter, site_idx: np.ndarray, hap: np.ndarray, *,
                      phased: bool, haploid: np.ndarray | None = None) -> None:
        """Records of ``site_idx`` from int8 haplotypes [2S, len(site_idx)] (``haploid``:
        bool [S], samples written with one allele)."""
        rows = genotype_cells(hap, phased, haploid)
        w.write_bytes(b"".join(
            f"{cfg.contig}\t{positions[s]}\t.\t{alleles[s][0]}\t{alleles[s][1]}\t.\tPASS\t.\t"
            f"GT\t".encode("ascii") + rows[k] for k, s in enumerate(site_idx)))

    # pass 2: reference and truth files a block of sites at a time; the targets' array sites
    # (a small matrix) are kept for the target file
    nodes = np.concatenate([ref_nodes, tgt_nodes])
    n_ref = ref_nodes.size
    is_kept = np.zeros(n_sites, bool)
    is_kept[sites] = True
    array_col = {int(s): k for k, s in enumerate(array_sites)}
    tgt_array = np.zeros((tgt_nodes.size, array_sites.size), np.int8)
    block_ids: list[int] = []
    block_rows: list[np.ndarray] = []
    block = max(1, 20_000_000 // max(1, nodes.size))

    def flush(ref_w: BgzipVcfWriter, truth_ws: list[BgzipVcfWriter]) -> None:
        if block_ids:
            g = np.stack(block_rows, axis=1)  # [nodes, sites]
            ids = np.array(block_ids)
            write_records(ref_w, ids, g[:n_ref], phased=True, haploid=ref_male)
            for b, truth_w in zip(batches, truth_ws, strict=True):
                write_records(truth_w, ids, g[n_ref:][hap_batch == b], phased=True,
                              haploid=tgt_male[hap_batch[0::2] == b])
            block_ids.clear()
            block_rows.clear()

    def batch_names(b: int) -> list[str]:
        return [n for n, nb in zip(tgt_names, tgt_batch, strict=True) if nb == b]

    ref_w = open_vcf(out.reference_vcf, ref_names)
    truth_ws = [open_vcf(batch_path(out.truth_vcf, b), batch_names(b)) for b in batches]
    with ref_w, contextlib.ExitStack() as stack:
        for w in truth_ws:
            stack.enter_context(w)
        for var in ts.variants(samples=nodes, copy=False):
            sid = var.site.id
            if not is_kept[sid]:
                continue
            g = var.genotypes.astype(np.int8)
            block_ids.append(sid)
            block_rows.append(g)
            if sid in array_col:
                tgt_array[:, array_col[sid]] = g[n_ref:]
            if len(block_ids) >= block:
                flush(ref_w, truth_ws)
        flush(ref_w, truth_ws)

    hap = tgt_array  # [2S, A]
    if cfg.genotype_error > 0:
        flip = rng.random(hap.shape) < cfg.genotype_error / 2  # a hap flip ~ half an error
        hap = np.where(flip, 1 - hap, hap).astype(np.int8)
    if not cfg.target_phased:
        # unphased: orientation within a genotype carries no information
        swap = rng.random((hap.shape[0] // 2, hap.shape[1])) < 0.5
        a, b = hap[0::2].copy(), hap[1::2].copy()
        hap[0::2] = np.where(swap, b, a)
        hap[1::2] = np.where(swap, a, b)
    if cfg.missing_rate > 0:
        miss = rng.random((hap.shape[0] // 2, hap.shape[1])) < cfg.missing_rate
        hap[0::2][miss] = -1
        hap[1::2][miss] = -1
    for b in batches:
        with open_vcf(batch_path(out.target_vcf, b), batch_names(b)) as w:
            write_records(w, array_sites, hap[hap_batch == b], phased=cfg.target_phased,
                          haploid=tgt_male[hap_batch[0::2] == b])
    panel = pd.DataFrame({
        "sample": ref_names + tgt_names,
        "population": [p for p, _ in ref_ind] + [p for p, _ in tgt_ind],
        "role": ["reference"] * len(ref_names) + ["target"] * len(tgt_names),
        "batch": [0] * len(ref_names) + tgt_batch,
    })
    if cfg.male_fraction > 0:
        panel["sex"] = np.where(np.concatenate([ref_male, tgt_male]), "male", "female")
    Path(out.panel).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out.panel) as tmp:
        panel.to_csv(tmp, sep="\t", index=False)
    if cfg.genetic_map:
        write_plink_map(cfg, str(Path(out.reference_vcf).parent / "genetic_map.map"))
    summary = {"reference_samples": len(ref_names), "target_samples": len(tgt_names),
               "target_batches": int(cfg.target_batches),
               "reference_variants": int(sites.size), "array_sites": int(array_sites.size),
               "dropped_multiallelic_or_duplicate": int((~keep & (n_alleles != 2)).sum())}
    log.info("simulated %s: %s", cfg.model, summary)
    return summary


def simulation_config_from_dict(d: dict) -> SimulationConfig:
    """Build a :class:`SimulationConfig` from the ``simulation`` section of the config."""
    fields = {f.name for f in dataclasses.fields(SimulationConfig)}
    unknown = set(d) - fields
    if unknown:
        raise InputError(f"simulation: unknown keys {sorted(unknown)}")
    return SimulationConfig(**d)


def ensure_dir(path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
