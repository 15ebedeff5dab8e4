"""``vcfbert`` command line: tools around the workflow (the workflow itself runs with snakemake).

Subcommands:
    simulate   write a simulated scenario (reference, targets, truth, panel)
    floor      impute with a non-learned floor (longest_match or window_nearest)
    evaluate   score any imputed VCF (vcfbert, Beagle, Minimac4) against a truth VCF
    panel      check a trained panel's files against its manifest and summarise it
    impute     impute a batch of targets with a trained panel, in one process

User errors end in one line (``vcfbert <cmd>: error: ...``) and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

from . import __version__
from .errors import InputError, VcfbertError

log = logging.getLogger("vcfbert")


def _stores(reference: str, targets: str, workdir: Path, panel: str | None = None
            ) -> list[tuple[str, str, str]]:
    """Parse both VCFs into stores under ``workdir``: [(contig, reference.h5, targets.h5)]."""
    from .ingest import parse_reference, parse_targets, write_contig_list

    contigs = write_contig_list(reference, workdir / "contigs.tsv", target_vcf=targets)
    out = []
    for i, contig in enumerate(contigs):
        r, t = workdir / f"{i}.ref.h5", workdir / f"{i}.tgt.h5"
        parse_reference(reference, contig, r, panel=panel)
        parse_targets(targets, r, contig, t, workdir / f"{i}.qs.tsv", workdir / f"{i}.qn.tsv")
        out.append((contig, str(r), str(t)))
    return out


def _yaml_mapping(path: Path, what: str = "simulation config",
                  example: str = "bench/scenarios/ooa_speed.yaml") -> dict:
    """The mapping in the YAML file ``path`` (``what``: a scenario or a workflow config);
    one-line :class:`InputError` for a missing, unreadable or non-mapping file."""
    import yaml

    try:
        params = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read the {what} {path}: {exc.strerror}; give an "
                         f"existing YAML file (e.g. {example})") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise InputError(f"the {what} {path} is not valid YAML{at}: "
                         f"{getattr(exc, 'problem', None) or exc}") from exc
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InputError(f"the {what} {path} must be a mapping of keys, "
                         f"not a {type(params).__name__}")
    return params


def cmd_simulate(a: argparse.Namespace) -> None:
    from .simulate import SimulatedPaths, simulate, simulation_config_from_dict

    params = _yaml_mapping(Path(a.config)) if a.config else {}
    if "simulation" in params:
        params = params["simulation"]
    out = Path(a.outdir)
    out.mkdir(parents=True, exist_ok=True)
    summary = simulate(simulation_config_from_dict(params), SimulatedPaths(
        str(out / "reference.vcf.gz"), str(out / "targets.vcf.gz"), str(out / "truth.vcf.gz"),
        str(out / "panel.tsv")))
    print(json.dumps(summary))


def cmd_floor(a: argparse.Namespace) -> None:
    import numpy as np

    from .baselines import floor_chromosome
    from .imputed_vcf import ChromosomeDosages, write_imputed_vcf
    from .io.h5store import read_reference, read_targets, read_variant_table
    from .windows import define_windows

    with tempfile.TemporaryDirectory() as tmp:
        chroms, samples = [], None
        for contig, rpath, tpath in _stores(a.reference, a.targets, Path(tmp)):
            ref = read_reference(rpath)
            tgt = read_targets(tpath)
            windows = define_windows(read_variant_table(rpath)["position"],
                                     tgt.variant_ref_index, core_sites=a.core_sites,
                                     flank_sites=a.flank_sites)
            prob = floor_chromosome(a.method, ref.haplotypes, tgt.haplotypes,
                                    tgt.variant_ref_index, windows, k=a.k, scale=a.scale)
            cols = tgt.variant_ref_index
            prob[:, cols] = np.where(tgt.haplotypes >= 0, tgt.haplotypes, prob[:, cols])
            typed = np.zeros(ref.n_variants, bool)
            typed[cols] = True
            chroms.append(ChromosomeDosages(contig, ref.position, ref.alleles, ref.ids, prob,
                                            typed))
            samples = tgt.sample_id
        write_imputed_vcf(a.output, chroms, samples,
                          command=" ".join(["vcfbert", *sys.argv[1:]]))


def cmd_evaluate(a: argparse.Namespace) -> None:
    from .evaluate import site_table, write_tables
    from .evaluate_stream import evaluate
    from .ingest import read_panel

    with tempfile.TemporaryDirectory() as tmp:
        stores = _stores(a.reference, a.targets, Path(tmp))
        sites = site_table([s[1] for s in stores], [s[2] for s in stores])
    acc, pv = evaluate(a.imputed, a.truth, sites, populations=read_panel(a.panel),
                       method=a.method, tmp_dir=Path(a.output).resolve().parent)
    write_tables(acc, pv, a.output, a.per_variant or str(Path(a.output).with_suffix(".pv.tsv.gz")))
    print(acc[acc["group"] == "all"].to_string(index=False))


def cmd_panel(a: argparse.Namespace) -> None:
    from .trained_panel import verify

    m = verify(a.panel_dir)
    total = sum(f["bytes"] for f in m["files"].values())
    print(f"{a.panel_dir}: vcfbert trained panel (format {m['format_version']}, built by "
          f"vcfbert {m['vcfbert_version']}); {len(m['files'])} files, {total / 1e6:.1f} MB, "
          "all match the manifest")
    print(f"reference {m['reference']['vcf']}: {m['reference']['samples']} samples; array: "
          f"{m['array']['sites']} sites")
    for c in m["contigs"]:
        print(f"  {c['contig']}: {c['variants']} variants, {c['array_sites']} array sites, "
              f"{c['windows']} windows, length {c['length'] or 'unknown'}")


def _cpus() -> int:
    """The CPUs this process may run on (Beagle's default ``nthreads``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _positive(text: str) -> int:
    """``--threads``: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of threads, 1 or more")
    return int(text)


def _device(text: str) -> str:
    """``--device``: what the workflow's ``device`` key takes."""
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r}: give auto, cpu, cuda or cuda:N")
    return text


def cmd_impute(a: argparse.Namespace) -> None:
    from .runtime import NUMPY_HUGE_PAGES, cap_threads  # imports no numpy

    # as the workflow's jobs run (vcfbert.runtime.export_for_jobs); read at numpy's import,
    # so set before the imports below (vcfbert.steps imports numpy)
    os.environ.setdefault(NUMPY_HUGE_PAGES, "0")
    from .panel_batch import BatchSettings, check_output, companion, impute_batch

    check_output(a.output, force=a.force)
    for option, paths in (("--targets", a.targets), ("--reference", a.reference or []),
                          ("--sample-table", [a.sample_table] if a.sample_table else [])):
        for path in paths:
            if not os.path.isfile(path):
                raise InputError(f"{option} {path}: no such file")
    threads = a.threads or _cpus()
    cap_threads(threads)
    settings = BatchSettings()
    if a.config:
        settings = BatchSettings.from_config(
            _yaml_mapping(Path(a.config), "workflow config", "config/config.yaml"))
    settings = settings.replace(
        batch_size=a.batch_size, windows_per_job=a.windows_per_job,
        copying_states=a.copying_states, match_states=a.match_states, gp=a.gp,
        format_fields=tuple(a.format_fields) if a.format_fields is not None else None,
        phasing_tool=a.phasing, beagle_command=a.beagle_command, device=a.device,
        min_call_rate=a.min_call_rate, multiallelic=a.multiallelic,
        max_missing_array_fraction=a.max_missing_array_fraction)
    # vcfbert's INFO lines always go to <name>.log (as Beagle writes its .log); the terminal
    # keeps the level -v gave it
    for terminal in logging.getLogger().handlers:
        if terminal.level == logging.NOTSET:
            terminal.setLevel(logging.getLogger().level)
    handler = logging.FileHandler(companion(a.output, ".log"), mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        impute_batch(panel_dir=a.panel, target_vcf=a.targets, out=a.output, settings=settings,
                     threads=threads, reference_vcf=a.reference or (),
                     chromosomes=a.chromosomes, sample_table=a.sample_table,
                     command=shlex.join(["vcfbert", *sys.argv[1:]]), work_dir=a.work_dir)
    except VcfbertError as exc:  # in <name>.log too; main prints it on the terminal, once
        handler.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (exc,), None))
        raise
    finally:
        log.removeHandler(handler)
        handler.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vcfbert", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"vcfbert {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="write a simulated scenario")
    s.add_argument("-o", "--outdir", required=True)
    s.add_argument("--config", help="YAML with simulation keys (or a whole config file)")
    s.set_defaults(func=cmd_simulate)

    f = sub.add_parser("floor", help="impute with a non-learned floor")
    f.add_argument("--method", choices=["longest_match", "window_nearest"], required=True)
    f.add_argument("--reference", required=True, help="phased reference VCF/BCF")
    f.add_argument("--targets", required=True, help="target VCF/BCF")
    f.add_argument("-o", "--output", required=True, help="imputed .vcf.gz")
    f.add_argument("-k", type=int, default=32, help="haplotypes copied from (default 32)")
    f.add_argument("--scale", type=float, default=16.0,
                   help="longest_match: run length giving weight e (default 16)")
    f.add_argument("--core-sites", type=int, default=32)
    f.add_argument("--flank-sites", type=int, default=16,
                   help="window_nearest: typed sites per flank (default 16: 64-site windows)")
    f.set_defaults(func=cmd_floor)

    e = sub.add_parser("evaluate", help="score an imputed VCF against the truth")
    e.add_argument("--imputed", required=True, nargs="+",
                   help="imputed VCF (or one per chromosome)")
    e.add_argument("--truth", required=True, nargs="+", help="truth VCF (or one per chromosome)")
    e.add_argument("--reference", required=True, help="the reference panel used (for MAF)")
    e.add_argument("--targets", required=True, help="the targets used (typed sites)")
    e.add_argument("--panel", help="sample/population table")
    e.add_argument("--method", default="imputed", help="label in the table")
    e.add_argument("-o", "--output", required=True, help="accuracy TSV")
    e.add_argument("--per-variant", help="per-variant TSV(.gz)")
    e.set_defaults(func=cmd_evaluate)

    t = sub.add_parser("panel", help="check a trained panel against its manifest, summarise it")
    t.add_argument("panel_dir", help="the trained panel directory (results/trained_panel)")
    t.set_defaults(func=cmd_panel)

    i = sub.add_parser(
        "impute", help="impute a batch of targets with a trained panel, in one process",
        description="Impute targets with a trained panel (`snakemake trained_panel`) in one "
        "process: the steps of the workflow's batch (`--config trained_panel=DIR`), the same "
        "VCF. Settings default to config/config.yaml's; --config takes a workflow config's.")
    i.add_argument("--panel", required=True, help="the trained panel (results/trained_panel)")
    i.add_argument("--targets", required=True, nargs="+",
                   help="target VCF/BCF (or one per chromosome)")
    i.add_argument("-o", "--output", required=True,
                   help="imputed VCF (.vcf.gz; its .tbi, <name>.qc.tsv and <name>.log beside it)")
    i.add_argument("--reference", nargs="+",
                   help="the panel's reference VCF: checked against the panel; Beagle phases "
                   "unphased targets against it")
    i.add_argument("--threads", type=_positive, default=0,
                   help="batches imputed at once, and every thread pool (default: all CPUs)")
    i.add_argument("--chromosomes", nargs="+", help="impute only these contigs")
    i.add_argument("--sample-table", help="sample table with a sex column (declares males)")
    i.add_argument("--config", help="a workflow config YAML whose impute, ingest, phasing, "
                   "output and device keys to use (options below override it)")
    i.add_argument("--gp", action=argparse.BooleanOptionalAction, default=None,
                   help="write GP after DS (default: yes; --no-gp: GT:DS, as Beagle)")
    i.add_argument("--format-fields", nargs="*", choices=["HDS", "AP1", "AP2"],
                   help="FORMAT fields beside GT:DS(:GP)")
    i.add_argument("--batch-size", type=int, help="target haplotypes per forward pass")
    i.add_argument("--windows-per-job", type=int, help="windows imputed per piece")
    i.add_argument("--copying-states", type=int, help="copying states (0: the model's own)")
    i.add_argument("--match-states", type=int, help="copying states by match length")
    i.add_argument("--phasing", choices=["beagle", "none"],
                   help="unphased targets: phase with Beagle 5.4 (default) or refuse them")
    i.add_argument("--beagle-command", help="how to call Beagle (default: beagle)")
    i.add_argument("--device", type=_device, help="auto (the default), cpu, cuda or cuda:N")
    i.add_argument("--min-call-rate", type=float, help="refuse samples below this call rate")
    i.add_argument("--multiallelic", choices=["split", "drop"])
    i.add_argument("--max-missing-array-fraction", type=float,
                   help="refuse targets lacking more than this share of the panel's array")
    i.add_argument("--work-dir", help="keep the intermediate files here (default: a "
                   "temporary folder beside the output, removed)")
    i.add_argument("--force", action="store_true", help="overwrite the output")
    i.set_defaults(func=cmd_impute)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except VcfbertError as exc:
        print(f"vcfbert {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """The ``vcfbert`` program (console script and ``python -m vcfbert.cli``): :func:`main`,
    then, after a success, the process ends without the interpreter's teardown
    (:func:`vcfbert.runtime.exit_without_teardown`: its log flushed and closed, its streams
    flushed). After ``vcfbert impute`` that teardown (torch, numba, the model's arrays) took
    ~0.7 s of a ~23 s batch (docs/model.md, "Inference speed"). ``main`` itself returns, for
    callers in the same process."""
    code = main()
    if code == 0:
        from .runtime import exit_without_teardown

        exit_without_teardown()  # returns while another non-daemon thread is alive
    raise SystemExit(code)


if __name__ == "__main__":
    run()
