"""Multi-process training: ``torchrun`` runs this module once per process (one per GPU).

    python -m torch.distributed.run --standalone --nproc_per_node N -m vcfbert.ddp ARGS.json

``ARGS.json`` holds the keyword arguments of :func:`vcfbert.steps.train_epoch`; the rule's
adapter calls :func:`train_epoch` here, which runs it in-process or under torchrun. This module
imports ``steps``, never the reverse. Each process
joins the group (NCCL on GPUs, gloo on CPU), takes its share of every batch's queries and sums
gradients with the others, so an epoch on N processes computes the same updates as one process
with the same global batch (up to float rounding). Rank 0 validates and writes the outputs.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def train_epoch(*, processes: int, **kwargs: Any) -> None:
    """One training epoch (``steps.train_epoch`` keyword arguments) on ``processes``
    processes: in this process when 1, else under torchrun."""
    from .steps import train_epoch as one_process

    if processes > 1:
        launch(processes, kwargs)
    else:
        one_process(**kwargs)


def launch(n_procs: int, kwargs: dict[str, Any]) -> None:
    """Run ``steps.train_epoch(**kwargs)`` on ``n_procs`` processes with torchrun."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False,
                                     dir=Path(kwargs["out_model"]).parent) as fh:
        json.dump(kwargs, fh)
        args = fh.name
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={n_procs}", "-m", "vcfbert.ddp", args]
    log.info("launching %d training processes: %s", n_procs, " ".join(cmd))
    try:
        subprocess.run(cmd, check=True)
    finally:
        os.unlink(args)


def main() -> None:
    import torch
    import torch.distributed as dist

    from .runtime import setup_logging
    from .steps import train_epoch

    kwargs = json.loads(Path(sys.argv[1]).read_text())
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    setup_logging(None)
    cuda = torch.cuda.is_available() and kwargs.get("device", "auto") != "cpu"
    if cuda:
        torch.cuda.set_device(local)
        kwargs["device"] = f"cuda:{local}"
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        train_epoch(**kwargs, rank=rank, world_size=world)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
