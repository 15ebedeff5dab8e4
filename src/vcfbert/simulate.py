"""Simulated human-like data for the demo and the benchmarks (msprime + stdpopsim).

Writes what a user would bring: a phased reference VCF, a target VCF at "array" sites
(common variants thinned to about one per ``array_spacing`` bp), the targets' truth VCF at every
reference variant, and a panel TSV (sample, population, role). Everything follows from the
seed: the same parameters give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .errors import InputError
from .io.vcf_writer import BgzipVcfWriter, base_header, column_header, genotype_strings

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

    def __post_init__(self) -> None:
        if self.length < 10_000:
            raise InputError(f"simulation.length must be at least 10000 bp, not {self.length}")
        for role, d in (("reference_samples", self.reference_samples),
                        ("target_samples", self.target_samples)):
            if not d or any(int(n) < 0 for n in d.values()):
                raise InputError(f"simulation.{role} must map populations to sample counts")


@dataclasses.dataclass
class SimulatedPaths:
    reference_vcf: str
    target_vcf: str
    truth_vcf: str
    panel: str


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
    contig = species.get_contig(length=cfg.length, mutation_rate=model.mutation_rate)
    samples = {p: int(cfg.reference_samples.get(p, 0)) + int(cfg.target_samples.get(p, 0))
               for p in pops}
    engine = stdpopsim.get_engine("msprime")
    return engine.simulate(model, contig, {p: n for p, n in samples.items() if n > 0},
                           seed=cfg.seed)


def simulate(cfg: SimulationConfig, out: SimulatedPaths) -> dict[str, int]:
    """Run the simulation and write the four files of ``out``; return summary counts."""
    ts = _simulate_ts(cfg)
    rng = np.random.default_rng(cfg.seed)
    pop_names = {p.id: (p.metadata or {}).get("name", str(p.id)) for p in ts.populations()}
    # Individuals by population, split into reference and targets at random.
    ref_ind: list[tuple[str, int]] = []
    tgt_ind: list[tuple[str, int]] = []
    by_pop: dict[str, list[int]] = {}
    for ind in ts.individuals():
        pop = pop_names[ts.node(ind.nodes[0]).population]
        by_pop.setdefault(pop, []).append(ind.id)
    for pop in sorted(by_pop):
        ids = np.array(by_pop[pop])
        rng.shuffle(ids)
        n_ref = int(cfg.reference_samples.get(pop, 0))
        ref_ind += [(pop, int(i)) for i in ids[:n_ref]]
        tgt_ind += [(pop, int(i)) for i in ids[n_ref:]]

    def names(rows: list[tuple[str, int]], tag: str) -> list[str]:
        counters: dict[str, int] = {}
        out_names = []
        for pop, _ in rows:
            counters[pop] = counters.get(pop, 0) + 1
            out_names.append(f"{pop}_{tag}{counters[pop]:04d}")
        return out_names

    ref_names, tgt_names = names(ref_ind, "R"), names(tgt_ind, "T")
    ref_nodes = np.array([n for _, i in ref_ind for n in ts.individual(i).nodes])
    tgt_nodes = np.array([n for _, i in tgt_ind for n in ts.individual(i).nodes])

    G = ts.genotype_matrix()  # int [sites, sample nodes], node order = ts.samples()
    node_col = {int(n): j for j, n in enumerate(ts.samples())}
    ref_cols = np.array([node_col[int(n)] for n in ref_nodes])
    tgt_cols = np.array([node_col[int(n)] for n in tgt_nodes])
    positions = (ts.tables.sites.position.astype(np.int64) + 1)
    alleles = [v.alleles for v in ts.variants()] if G.shape[0] else []
    n_alleles = np.array([len([a for a in al if a is not None]) for al in alleles])
    ref_g = G[:, ref_cols]
    keep = (n_alleles == 2)
    # keep sites polymorphic in the reference panel, de-duplicated by position
    ref_ac = ref_g.sum(1)
    keep &= (ref_ac > 0) & (ref_ac < ref_g.shape[1])
    _, first = np.unique(positions, return_index=True)
    uniq = np.zeros_like(keep)
    uniq[first] = True
    keep &= uniq
    sites = np.flatnonzero(keep)
    if sites.size == 0:
        raise InputError("simulation produced no polymorphic site; increase simulation.length")
    ref_af = ref_g[sites].mean(1)
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

    def write(path: str, site_idx: np.ndarray, cols: np.ndarray, samples: list[str], *,
              phased: bool, error: float = 0.0, missing: float = 0.0) -> None:
        hap = G[site_idx][:, cols].T.astype(np.int8)  # [2S, V]
        if error > 0:
            flip = rng.random(hap.shape) < error / 2  # a hap flip ~ half a genotype error
            hap = np.where(flip, 1 - hap, hap).astype(np.int8)
        if not phased:
            # unphased: orientation within a genotype carries no information
            swap = rng.random((hap.shape[0] // 2, hap.shape[1])) < 0.5
            a, b = hap[0::2].copy(), hap[1::2].copy()
            hap[0::2] = np.where(swap, b, a)
            hap[1::2] = np.where(swap, a, b)
        if missing > 0:
            miss = rng.random((hap.shape[0] // 2, hap.shape[1])) < missing
            hap[0::2][miss] = -1
            hap[1::2][miss] = -1
        gts = genotype_strings(hap, phased)
        with BgzipVcfWriter(path) as w:
            w.write_lines(base_header(contigs, source="vcfbert simulate (msprime/stdpopsim "
                                                       f"{cfg.model}, seed {cfg.seed})"))
            w.write_lines(fmt)
            w.write_lines([column_header(samples)])
            lines = []
            for k, s in enumerate(site_idx):
                ref, alt = alleles[s][0], alleles[s][1]
                lines.append(f"{cfg.contig}\t{positions[s]}\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t"
                             + "\t".join(gts[k]))
                if len(lines) >= 2000:
                    w.write_lines(lines)
                    lines = []
            w.write_lines(lines)

    write(out.reference_vcf, sites, ref_cols, ref_names, phased=True)
    write(out.truth_vcf, sites, tgt_cols, tgt_names, phased=True)
    write(out.target_vcf, array_sites, tgt_cols, tgt_names, phased=cfg.target_phased,
          error=cfg.genotype_error, missing=cfg.missing_rate)
    panel = pd.DataFrame({
        "sample": ref_names + tgt_names,
        "population": [p for p, _ in ref_ind] + [p for p, _ in tgt_ind],
        "role": ["reference"] * len(ref_names) + ["target"] * len(tgt_names),
    })
    Path(out.panel).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out.panel) as tmp:
        panel.to_csv(tmp, sep="\t", index=False)
    summary = {"reference_samples": len(ref_names), "target_samples": len(tgt_names),
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
