"""The trainer image's one command line: `python -m ticclip_trainer {train,synth,make-slice,register-shards,
cut-slices,eval-pack} ...`; main(argv) returns the exit code."""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from typing import NamedTuple

from .errors import EXIT_PERMANENT, EXIT_PREEMPTED, EXIT_TRANSIENT, TrainerError

EXIT_DIR_ENV = "TICCLIP_EXIT_DIR"

log = logging.getLogger("ticclip_trainer")


def _train_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("--plan", required=True, help="s3://.../plan.json (endpoint from S3_ENDPOINT) or a local path")


def _synth_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--out", required=True, help="s3://bucket/prefix or a local folder; slices go to <out>/<sliceId>/")
    s.add_argument("--slices", default="2016,2017,2018,2019", help="comma-separated slice ids in time order")
    s.add_argument("--samples", type=int, default=4000, help="training samples per slice")
    s.add_argument("--eval-samples", type=int, default=500, help="held-out samples per slice (eval/)")
    s.add_argument("--shard-size", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--eval-pack-architecture",
        default="ticclip-tiny",
        help="also write each held-out split as a retrieval eval pack for this model ('' for none)",
    )


def _make_slice_arguments(m: argparse.ArgumentParser) -> None:
    m.add_argument("--input", required=True, help="folder of <stem>.<jpg|png|webp> + <stem>.txt, or a .csv/.parquet")
    m.add_argument("--image-column", default="image")
    m.add_argument("--caption-column", default="caption")
    m.add_argument("--out", required=True, help="slice prefix: s3://bucket/prefix/<sliceId>/ or a local folder")
    m.add_argument("--slice-id", required=True)
    m.add_argument("--shard-size", type=int, default=1000)
    m.add_argument(
        "--eval-fraction",
        type=float,
        default=0.0,
        help="fraction of the pairs (every 1/f-th) held out as the eval/ pack",
    )


def _register_shards_arguments(g: argparse.ArgumentParser) -> None:
    g.add_argument("--shards", required=True, help="folder or s3:// prefix holding the .tar shards (not recursive)")
    g.add_argument("--slice-id", help="default: the folder's name")
    g.add_argument(
        "--caption-field", default="caption", help="field of a sample's .json holding its caption when it has no .txt"
    )
    g.add_argument(
        "--eval-fraction",
        type=float,
        default=0.0,
        help="hold out the samples whose key hashes below this fraction: never trained on, written to eval/",
    )
    g.add_argument("--eval-pack-architecture", help="also write the held-out samples as a retrieval eval pack")
    g.add_argument(
        "--count-from",
        choices=("auto", "headers"),
        default="auto",
        help="auto: <shard>_stats.json when present and plausible, else <shard>.parquet, else the tar headers",
    )
    g.add_argument("--window", type=int, default=16 * 1024, help="bytes read from each tar header (ranged reads)")
    g.add_argument("--parallel", type=int, default=8, help="shards scanned at once")
    g.add_argument(
        "--read",
        choices=("ranged", "whole"),
        default="ranged",
        help="header walks: ranged (skip images, ~1 GET per sample) or whole (every byte, 8 MiB GETs)",
    )


def _cut_slices_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("--pool", required=True, help="folder or s3:// prefix of the pool's .tar shards")
    c.add_argument("--out", required=True, help="slices go to <out>/<sliceId>/")
    c.add_argument("--by-field", help="the .json field with each sample's year or date (2014, 2014-05-03...)")
    c.add_argument("--granularity", choices=("year", "month", "day"), default="year", help="with --by-field")
    c.add_argument("--key-lists", help="folder or s3:// prefix of <sliceId>.txt|.npy lists of sample keys")
    c.add_argument("--key-field", help="with --key-lists: match this .json field (DataComp: uid), not the tar key")
    c.add_argument("--caption-field", default="caption", help="the .json caption field of samples without .txt")
    c.add_argument("--shard-size", type=int, default=5000)
    c.add_argument("--eval-fraction", type=float, default=0.0, help="held out by key hash, into each slice's eval/")
    c.add_argument("--eval-pack-architecture", help="also write each slice's retrieval eval pack")


def _eval_pack_arguments(e: argparse.ArgumentParser) -> None:
    kinds = e.add_subparsers(dest="kind", required=True)
    r = kinds.add_parser("retrieval", help="a slice's held-out split -> retrieval pack")
    r.add_argument("--slice", required=True, help="slice folder (s3://... or local) with eval/manifest.json")
    r.add_argument("--out", help="pack folder; default <slice>/eval/, where the manifest points")
    r.add_argument("--architecture", required=True, help="model whose preprocessing and tokenizer to use")
    z = kinds.add_parser("zeroshot", help="labelled image folder <input>/<class>/*.jpg -> zero-shot pack")
    z.add_argument("--input", required=True)
    z.add_argument("--out", required=True)
    z.add_argument("--name", help="pack name; default the input folder's name")
    z.add_argument("--architecture", required=True)
    z.add_argument("--templates", help="file with one template per line, each containing {c}")


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    from . import plan as plan_mod

    plan = plan_mod.load(args.plan)  # validate before launching workers
    rc = _distributed_launch(argv)
    if rc is not None:
        return rc
    _marker(".pid", os.getpid())
    from .train import run_round

    return run_round(plan)


def _synth(args: argparse.Namespace, _argv: list[str]) -> int:
    from . import synth

    ms = synth.write(
        args.out,
        [s for s in args.slices.split(",") if s],
        args.samples,
        args.eval_samples,
        args.shard_size,
        args.seed,
        eval_pack_architecture=args.eval_pack_architecture or None,
    )
    for m in ms:
        print(f"{m['sliceId']}: {m['numSamples']} samples in {len(m['shards'])} shards")
    return 0


def _make_slice(args: argparse.Namespace, _argv: list[str]) -> int:
    from . import slices

    src = args.input
    rows = (
        slices.read_table(src, args.image_column, args.caption_column)
        if os.path.isfile(src)
        else slices.read_folder(src)
    )
    train, ev = rows, None
    if args.eval_fraction > 0:
        every = max(2, round(1 / args.eval_fraction))
        allrows = list(rows)
        ev = [r for i, r in enumerate(allrows) if i % every == every - 1]
        train = [r for i, r in enumerate(allrows) if i % every != every - 1]
    m = slices.write_slice(args.out, args.slice_id, train, args.shard_size, ev)
    print(f"{m['sliceId']}: {m['numSamples']} samples in {len(m['shards'])} shards -> {args.out}")
    return 0


def _register_shards(args: argparse.Namespace, _argv: list[str]) -> int:
    from .register import register

    return _print_report(register, args, location="shards")


def _cut_slices(args: argparse.Namespace, _argv: list[str]) -> int:
    from .cut import cut

    return _print_report(cut, args)


def _print_report(make: Callable[..., dict], args: argparse.Namespace, **dest_of: str) -> int:
    """Calls `make` with each of its parameters from the argument of the same name (dest_of: another
    name), those the command line has, and prints its report as JSON."""
    names = inspect.signature(make).parameters
    given = {n: getattr(args, dest_of.get(n, n)) for n in names if hasattr(args, dest_of.get(n, n))}
    print(json.dumps(make(**given), indent=2))
    return 0


def _eval_pack(args: argparse.Namespace, _argv: list[str]) -> int:
    from . import evalpack

    if args.kind == "retrieval":
        print(evalpack.make_retrieval_pack(args.slice, args.out, args.architecture))
    else:
        print(evalpack.make_zeroshot_pack(args.input, args.out, args.architecture, args.name, args.templates))
    return 0


class Subcommand(NamedTuple):
    """One subcommand: its help, what adds its arguments, and what runs it ((parsed arguments, the
    command line as given) -> the exit code)."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, list[str]], int]


# A new subcommand is one entry here, with its arguments and run functions above.
SUBCOMMANDS: dict[str, Subcommand] = {
    "train": Subcommand("run one training round from a RoundPlan", _train_arguments, _train),
    "synth": Subcommand("write the synthetic time-drifting dataset, one slice per id", _synth_arguments, _synth),
    "make-slice": Subcommand(
        "image+caption pairs -> WebDataset slice with manifest.json and _SUCCESS", _make_slice_arguments, _make_slice
    ),
    "register-shards": Subcommand(
        "existing WebDataset shards (img2dataset layout) -> a slice in place: manifest.json, eval/, _SUCCESS",
        _register_shards_arguments,
        _register_shards,
    ),
    "cut-slices": Subcommand(
        "one pool of WebDataset shards -> time slices (members copied, not re-encoded)",
        _cut_slices_arguments,
        _cut_slices,
    ),
    "eval-pack": Subcommand(
        "build an eval pack the operator's evaluator reads (docs/evaluation.md)", _eval_pack_arguments, _eval_pack
    ),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ticclip_trainer")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, command in SUBCOMMANDS.items():
        command.arguments(sub.add_parser(name, help=command.help))
    return p


def _distributed_launch(argv: list[str]) -> int | None:
    """Several processes (NPROC_PER_NODE > 1 or NNODES > 1) and not yet under torchrun: run torchrun
    as a child and return the pod's exit code, else None (train in this process).

    torchrun reports any failed worker as 1, which would make the Job retry a bad plan on the most
    expensive pods. Each worker records its TrainerError exit code in a marker file; the launcher maps
    them: any 2 -> 2, else any 143 -> 143, else any 75 -> 75, else torchrun's code. SIGTERM (what the
    kubelet sends to PID 1, this process) goes straight to the workers, which checkpoint; torchrun
    itself would give them only its own 30 s before SIGKILL.
    """
    nnodes, nproc = int(os.environ.get("NNODES", "1")), int(os.environ.get("NPROC_PER_NODE", "1"))
    if (nnodes == 1 and nproc == 1) or "LOCAL_RANK" in os.environ:
        return None
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nnodes}",
        f"--nproc_per_node={nproc}",
        f"--node_rank={os.environ.get('NODE_RANK', '0')}",
        f"--master_addr={os.environ.get('MASTER_ADDR', '127.0.0.1')}",
        f"--master_port={os.environ.get('MASTER_PORT', '29500')}",
        "-m",
        "ticclip_trainer",
        *argv,
    ]
    with tempfile.TemporaryDirectory(prefix="ticclip-exit-") as markers:
        log.info("launching %s", " ".join(cmd))
        proc = subprocess.Popen(cmd, env={**os.environ, EXIT_DIR_ENV: markers})

        def forward(signum, _frame):
            for name in os.listdir(markers):
                if name.endswith(".pid"):
                    try:
                        os.kill(int(open(os.path.join(markers, name)).read()), signum)
                    except (OSError, ValueError):
                        pass

        prev = signal.signal(signal.SIGTERM, forward)
        try:
            rc = proc.wait()
        finally:
            signal.signal(signal.SIGTERM, prev)
        return pod_exit_code(rc, markers)


def pod_exit_code(torchrun_rc: int, markers: str) -> int:
    codes = set()
    for name in os.listdir(markers):
        if name.endswith(".exit"):
            try:
                codes.add(int(open(os.path.join(markers, name)).read()))
            except ValueError:
                pass
    if torchrun_rc == 0:
        return 0
    for code in (EXIT_PERMANENT, EXIT_PREEMPTED, EXIT_TRANSIENT):
        if code in codes:
            return code
    return torchrun_rc


def _marker(suffix: str, value: int) -> None:
    """Under the launcher: this worker's pid (for SIGTERM) or exit code (for the pod's exit code)."""
    d = os.environ.get(EXIT_DIR_ENV)
    if d and os.path.isdir(d):
        with open(os.path.join(d, f"rank-{os.environ.get('RANK', '0')}{suffix}"), "w") as f:
            f.write(str(value))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = _parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.cmd].run(args, argv)
    except TrainerError as e:
        log.error("%s: %s", type(e).__name__, e)
        print(f"error: {e}", file=sys.stderr)
        _marker(".exit", e.exit_code)
        return e.exit_code
    except (ValueError, OSError, KeyError) as e:
        if args.cmd != "train":
            print(f"error: {e}", file=sys.stderr)
            return EXIT_PERMANENT
        traceback.print_exc()
        _marker(".exit", EXIT_TRANSIENT)
        return EXIT_TRANSIENT
    except Exception:
        traceback.print_exc()
        return 1
