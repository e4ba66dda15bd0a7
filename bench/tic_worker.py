"""Runs RoundPlans one after another in one process, for bench/tic-experiment.ts.

Each round goes through the trainer's own run_round (plan validation, S3 streaming, training,
checkpoint, ONNX export, _SUCCESS), exactly as `python -m ticclip_trainer train --plan` does; only
the interpreter (and its PyTorch import, tens of seconds on a loaded 2-core machine) is shared.
Reads one plan URI per line on stdin and answers one JSON line per plan on stdout.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from ticclip_trainer import plan as plan_mod
from ticclip_trainer.errors import TrainerError
from ticclip_trainer.train import run_round


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        uri = line.strip()
        if not uri:
            continue
        t0 = time.time()
        try:
            rc, error = run_round(plan_mod.load(uri)), None
        except TrainerError as e:
            rc, error = e.exit_code, str(e)
        print(json.dumps({"uri": uri, "rc": rc, "error": error, "seconds": time.time() - t0}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
