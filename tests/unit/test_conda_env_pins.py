"""envs/vcfbert.yaml (the cluster users' conda environment for the jobs) pins what
pyproject.toml pins: the two files are edited apart, and a job on a cluster running another
torch, numba or snakemake than the tests did would be a silent divergence."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# needed by the Snakemake process that writes the HTML report, never inside a job
DRIVER_ONLY = {"pygments"}


def _by_name(requirements: list[str]) -> dict[str, str]:
    """``{"torch": "==2.13.0", ...}`` from requirement strings (comments already stripped)."""
    out = {}
    for req in requirements:
        name, spec = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(.*)$", req).groups()
        out[name.lower().replace("_", "-")] = spec.replace(" ", "")
    return out


def test_the_conda_environment_pins_what_pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "envs/vcfbert.yaml").read_text())["dependencies"]
    pip = next(d["pip"] for d in env if isinstance(d, dict) and "pip" in d)
    wanted = {k: v for k, v in _by_name(project).items() if k not in DRIVER_ONLY}
    assert _by_name(pip) == wanted
