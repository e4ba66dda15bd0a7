"""RoundState's checkpoint round trip and TrainSummary's JSON shape, without S3: the formats a resumed
round and the operator depend on."""

import io

import torch
from helpers import make_plan, source

from ticclip_trainer import models
from ticclip_trainer.data import SkipStats, StreamConfig, StreamState
from ticclip_trainer.preprocess import Preprocessing
from ticclip_trainer.progress import Progress
from ticclip_trainer.settings import Settings
from ticclip_trainer.summary import Precision, Throughput, TrainSummary
from ticclip_trainer.train import Dist, RoundSetup, RoundState, TrainStep, step_sizes, weights_digest

# partial/latest.pt as trainers before the RoundState split wrote it: a checkpoint must keep resuming.
CHECKPOINT_KEYS = [
    "fingerprint",
    "model",
    "optimizer",
    "scaler",
    "step",
    "samples_seen",
    "ranks",
    "streamConfig",
    "loss_curve",
    "resumes",
    "train_time_s",
    "init_digest",
    "torch_rng",
    "progress_history",
]


def _setup() -> RoundSetup:
    manifest = {"shards": [{"key": "000000.tar", "samples": 64}]}
    plan = make_plan("b", "runs/state/rounds/0000", [source("b", "2016", manifest)], 40, batch=16, endpoint="")
    prep = Preprocessing.for_model(models.TINY)
    progress = Progress(None, "", 40, 3, 30.0)
    settings = Settings.from_env({}, cuda=False)
    per_step = step_sizes(40, 16, 1)
    return RoundSetup(
        plan, Dist(), settings, None, None, torch.device("cpu"), "fp32", progress, prep, ["2016"], [], [1.0], per_step
    )


def _batch(setup: RoundSetup, step: int) -> dict:
    n, s = setup.per_step[step][0], setup.prep.image_size
    g = torch.Generator().manual_seed(step)
    return {
        "images": torch.randint(0, 256, (n, s, s, 3), dtype=torch.uint8, generator=g),
        "tokens": torch.randint(1, 100, (n, setup.prep.context_length), generator=g),
        "counts": [n],
        "stream": 0,
        "state": StreamState(1, ((0, step + 1, 10 * step),), 1, step).to_json(),
        "digest": f"d{step}",
        "skipped": SkipStats({"imageUndecodable": 1}, {0: 1}, {"imageUndecodable": "x"}).to_state(),
    }


def test_round_state_checkpoint_round_trip_resumes_where_it_stopped():
    setup = _setup()
    torch.manual_seed(0)
    model = models.create(models.TINY)
    state = RoundState.create(setup, model, weights_digest(model), StreamConfig(1, 1, 16))
    step = TrainStep.build(setup, state.model)
    for _ in range(2):
        batch = _batch(setup, state.step)
        step(state, batch)
        state.advance(batch, setup.per_step[state.step][0])
    buf = io.BytesIO()  # stored as save_partial stores it (and no tensor shared with `state`)
    torch.save(state.to_checkpoint(setup.fingerprint, [state.rank_checkpoint()], []), buf)
    ck = torch.load(io.BytesIO(buf.getvalue()), weights_only=False)
    assert list(ck) == CHECKPOINT_KEYS
    assert list(ck["ranks"][0]) == ["streams", "per_source", "digest", "skipped"]

    resumed = RoundState.from_checkpoint(ck, setup, models.create(models.TINY))
    assert weights_digest(resumed.model) == weights_digest(state.model)
    assert (resumed.step, resumed.samples_seen, resumed.per_source) == (2, 32, [32])
    assert resumed.positions == state.positions and resumed.digest == state.digest
    assert resumed.skipped.to_state() == state.skipped.to_state() and resumed.skipped.total == 2
    assert resumed.init_digest == state.init_digest and resumed.streams == state.streams
    assert resumed.optimizer.state_dict()["state"].keys() == state.optimizer.state_dict()["state"].keys()

    # The next step from the resumed state gives the weights the uninterrupted state gets.
    batch = _batch(setup, 2)
    step(state, batch)
    TrainStep.build(setup, resumed.model)(resumed, batch)
    assert weights_digest(resumed.model) == weights_digest(state.model)


def test_train_summary_json_has_the_keys_the_operator_reads_in_order():
    throughput = Throughput(1.0, 1.0, 0.5, 0.1, 2.0, 3)
    summary = TrainSummary(
        *({"name": "r"}, 0, models.TINY, None, 40, 40, {"2016": 40}, {"2016": 1.0}, 3, 16, 1, "cpu"),
        Precision("amp_bf16", "fp32"),
        *(1.5, 1.0, throughput, [], [], [], "a", "b", ["c"], {"total": 0}, {"minCosine": 1.0}, {"seed": 0}),
    )
    j = summary.to_json()
    assert list(j) == [
        *("run", "round", "architecture", "initCheckpoint", "samplesBudget", "samplesSeen", "samplesPerSource"),
        *("expectedShare", "steps", "batchSize", "worldSize", "device", "precision", "wallTimeSeconds"),
        *("trainTimeSeconds", "throughput", "lossCurve", "progressHistory", "resumes", "initWeightsDigest"),
        *("finalWeightsDigest", "dataDigests", "skippedSamples", "onnxParity", "config", "merge"),
    ]
    assert j["precision"] == {"requested": "amp_bf16", "effective": "fp32"}
    assert j["throughput"] == {
        "samplesPerSecond": 1.0,
        "samplesPerSecondPerProcess": 1.0,
        "dataWaitSecondsThisProcess": 0.5,
        "dataWaitShareThisProcess": 0.1,
        "decodeSecondsInWorkers": 2.0,
        "stepsThisProcess": 3,
    }
    assert j["samplesPerSource"] == {"2016": 40} and j["config"] == {"seed": 0}
