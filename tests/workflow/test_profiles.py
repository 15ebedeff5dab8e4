"""The two Snakemake profiles: what a run gets from them, parsed by Snakemake itself.

Snakemake applies the workflow profile (profiles/default, picked up automatically) after a
``--profile`` given on the command line, so a key set in both takes profiles/default's value.
That once turned the SLURM profile's ``keep-going: true`` and ``latency-wait: 60`` into false
and 5 s: a failed shard stopped every shard not yet submitted (seen as a CI failure that
depended on the timing).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import ROOT, SNAKEFILE

# keys of profiles/slurm that only the SLURM executor plugin parses (not installed here)
PLUGIN_KEYS = {"executor", "slurm-status-command"}


def _slurm_profile_without_plugin_keys(tmp_path: Path) -> tuple[Path, dict]:
    settings = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    core = {k: v for k, v in settings.items() if k not in PLUGIN_KEYS}
    folder = tmp_path / "slurm-core"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(core))
    return folder, core


def _comparable(value: object) -> object:
    """A parsed setting in a form that compares by content (resources hold functions)."""
    if isinstance(value, set | frozenset):
        return sorted(repr(v) for v in value)
    return repr(value)


def _parse(monkeypatch: pytest.MonkeyPatch, *argv: str):
    from snakemake.cli import parse_args

    monkeypatch.chdir(ROOT)  # where users run it, and where profiles/default is found
    return parse_args(["-s", str(SNAKEFILE), "-n", *argv])[1]


def test_the_workflow_profile_overrides_no_setting_of_the_slurm_profile(tmp_path, monkeypatch):
    profile, core = _slurm_profile_without_plugin_keys(tmp_path)
    both = _parse(monkeypatch, "--profile", str(profile))
    alone = _parse(monkeypatch, "--profile", str(profile), "--workflow-profile", "none")
    for key in core:
        dest = key.replace("-", "_")
        was, now = _comparable(getattr(alone, dest)), _comparable(getattr(both, dest))
        assert now == was, f"profiles/default changes the SLURM profile's {key!r}: {was} -> {now}"
    assert both.keep_going is True
    assert both.latency_wait == 60


def test_a_local_run_keeps_the_workflow_profile_settings(monkeypatch):
    from snakemake.settings.enums import RerunTrigger

    args = _parse(monkeypatch)
    assert set(args.rerun_triggers) == {RerunTrigger.MTIME, RerunTrigger.PARAMS,
                                        RerunTrigger.INPUT}  # not "code": see the profile
    assert args.rerun_incomplete and args.printshellcmds and args.show_failed_logs
    assert args.keep_going is False  # a local run stops at the first error, as Snakemake does
