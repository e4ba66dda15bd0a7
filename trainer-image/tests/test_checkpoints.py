"""Initial checkpoints in the formats people start from, each made here from the tiny architecture,
put on MinIO and used as model.initCheckpoint of a real round: the round's initial weights are the
source's, bit for bit (fp16 sources: their fp32 values)."""

import copy
import json

import numpy as np
import open_clip
import pytest
import torch
from helpers import get_json, make_plan, source, train_in_process, write_plan
from safetensors.torch import save_file

from ticclip_trainer import models
from ticclip_trainer.train import weights_digest

TINY, TINY_QG = "ticclip-tiny", "ticclip-tiny-quickgelu"


def _model(arch: str, seed: int):
    torch.manual_seed(seed)
    return models.create(arch)


def _round(s3, bucket, slices, tmp_path, name: str, init: str, arch: str = TINY, capfd=None):
    plan = make_plan(bucket, f"runs/ckpt-{name}/rounds/0001", [source(bucket, "2016", slices["2016"])], 64, round_=1)
    plan["model"] = {"architecture": arch, "initCheckpoint": init}
    rc = train_in_process(write_plan(tmp_path, plan, f"{name}.json"))
    err = capfd.readouterr().err if capfd else ""
    return rc, plan["output"]["uri"], err


def _assert_started_from(s3, out: str, expected: dict):
    summary = get_json(s3, out + "train_summary.json")
    assert summary["initWeightsDigest"] == weights_digest({k: v.float() for k, v in expected.items()})


def _fp32_equal(loaded: dict, expected: dict):
    assert loaded.keys() == expected.keys()
    for k, v in expected.items():
        assert loaded[k].dtype == torch.float32 and torch.equal(loaded[k], v.float()), k


def test_openai_torchscript_archive(s3, bucket, slices, tmp_path, capfd):
    """OpenAI's layout: a TorchScript archive (forward, encode_image, encode_text traced), conv, linear,
    attention and projection weights in fp16, plus input_resolution / context_length / vocab_size."""
    eager = _model(TINY_QG, 1).eval()
    half = copy.deepcopy(eager)
    open_clip.model.convert_weights_to_lp(half, torch.float16)
    expected = half.state_dict()
    for name, value in (("input_resolution", 32), ("context_length", 32), ("vocab_size", 49408)):
        if hasattr(eager, name):  # ints here, tensors in OpenAI's archives (the forward does not use them)
            delattr(eager, name)
        eager.register_buffer(name, torch.tensor(value))
    images, text = torch.ones(2, 3, 32, 32), torch.zeros(2, 32, dtype=torch.int)
    traced = torch.jit.trace_module(
        eager, {"forward": (images, text), "encode_image": (images,), "encode_text": (text,)}, check_trace=False
    )
    for n, p in traced.named_parameters():
        p.data = expected[n].clone()
    torch.jit.save(traced, str(tmp_path / "ViT-tiny.pt"))
    sd = torch.jit.load(str(tmp_path / "ViT-tiny.pt")).state_dict()
    assert sd["visual.conv1.weight"].dtype == torch.float16 and "input_resolution" in sd  # OpenAI's layout
    s3.upload(str(tmp_path / "ViT-tiny.pt"), f"s3://{bucket}/ckpt/openai/ViT-tiny.pt")

    from ticclip_trainer import checkpoints

    ck = checkpoints.LocalCheckpoint(str(tmp_path / "ViT-tiny.pt"), "ViT-tiny.pt", None, True)
    assert checkpoints.is_torchscript(ck.path)
    loaded = _model(TINY_QG, 2)
    checkpoints.load_initial(loaded, TINY_QG, ck)
    _fp32_equal(loaded.state_dict(), expected)

    rc, out, _ = _round(s3, bucket, slices, tmp_path, "openai", f"s3://{bucket}/ckpt/openai/ViT-tiny.pt", TINY_QG)
    assert rc == 0
    _assert_started_from(s3, out, expected)

    # The same archive into the GELU architecture: QuickGELU weights, refused, naming the right one.
    rc, out, err = _round(
        s3, bucket, slices, tmp_path, "openai-gelu", f"s3://{bucket}/ckpt/openai/ViT-tiny.pt", TINY, capfd
    )
    assert rc == 2 and "model.initCheckpoint" in err and "QuickGELU" in err and f"looks like {TINY_QG}" in err, err
    assert not s3.exists(out + "_SUCCESS")


def test_safetensors_file(s3, bucket, slices, tmp_path):
    sd = _model(TINY, 3).state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "m.safetensors"))
    s3.upload(str(tmp_path / "m.safetensors"), f"s3://{bucket}/ckpt/st/open_clip_model.safetensors")
    rc, out, _ = _round(s3, bucket, slices, tmp_path, "st", f"s3://{bucket}/ckpt/st/open_clip_model.safetensors")
    assert rc == 0
    _assert_started_from(s3, out, sd)


def _hub_folder(s3, bucket, tmp_path, name: str, model_cfg: dict, sd: dict):
    """A hub snapshot as `huggingface-cli download` leaves it, mirrored to S3: both weight files (the
    .bin holds other weights: open_clip prefers the safetensors), config, tokenizer files, README."""
    prefix = f"s3://{bucket}/ckpt/hub/{name}/"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    s3.upload(str(tmp_path / "w.safetensors"), prefix + "open_clip_model.safetensors")
    torch.save({k: torch.zeros_like(v) for k, v in sd.items()}, str(tmp_path / "w.bin"))
    s3.upload(str(tmp_path / "w.bin"), prefix + "open_clip_pytorch_model.bin")
    config = {"model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073]}}
    s3.put_bytes(prefix + "open_clip_config.json", json.dumps(config).encode())
    for other in ("README.md", "tokenizer.json", "config.json", ".gitattributes"):
        s3.put_bytes(prefix + other, b"{}")
    s3.put_bytes(prefix + "sub/ignored.safetensors", b"not weights")  # deeper keys are not the snapshot
    return prefix


def test_hub_snapshot_folder(s3, bucket, slices, tmp_path, capfd):
    sd = _model(TINY, 4).state_dict()
    prefix = _hub_folder(s3, bucket, tmp_path, "tiny", models.model_config(TINY), sd)
    rc, out, _ = _round(s3, bucket, slices, tmp_path, "hub", prefix)
    assert rc == 0
    _assert_started_from(s3, out, sd)

    # A folder whose config names another architecture (same shapes, QuickGELU): refused.
    prefix = _hub_folder(s3, bucket, tmp_path, "tiny-qg", models.model_config(TINY_QG), sd)
    rc, out, err = _round(s3, bucket, slices, tmp_path, "hub-qg", prefix, TINY, capfd)
    assert rc == 2 and "open_clip_config.json describes ticclip-tiny-quickgelu" in err, err
    assert not s3.exists(out + "_SUCCESS")


def test_training_checkpoint_with_module_prefix_and_numpy_optimizer_state(s3, bucket, slices, tmp_path):
    """open_clip_train's checkpoint of a DDP run, as TiC-CLIP released them: `module.` keys, and an
    optimizer state whose lr is a numpy float64 (open_clip before 2.30 computed it with np.cos)."""
    model = _model(TINY, 5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 3, 32, 32), torch.zeros(1, 32, dtype=torch.long))[2].backward()
    opt.step()
    for g in opt.param_groups:
        g["lr"] = 0.5 * (1 + np.cos(np.pi * 3 / 8)) * 1e-3
    ckpt = {
        "epoch": 5,
        "name": "tic-2016",
        "state_dict": {"module." + k: v for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
    }
    torch.save(ckpt, str(tmp_path / "2016.pt"))
    with pytest.raises(Exception, match="numpy"):  # plain weights-only loading refuses it
        torch.load(str(tmp_path / "2016.pt"), weights_only=True)
    s3.upload(str(tmp_path / "2016.pt"), f"s3://{bucket}/ckpt/tic/checkpoints/2016.pt")
    rc, out, _ = _round(s3, bucket, slices, tmp_path, "tic", f"s3://{bucket}/ckpt/tic/checkpoints/2016.pt")
    assert rc == 0
    _assert_started_from(s3, out, model.state_dict())


def test_checkpoint_of_another_architecture_says_what_it_looks_like(s3, bucket, slices, tmp_path, capfd):
    torch.save({"state_dict": _model(TINY, 6).state_dict()}, str(tmp_path / "tiny.pt"))
    s3.upload(str(tmp_path / "tiny.pt"), f"s3://{bucket}/ckpt/other/tiny.pt")
    rc, out, err = _round(s3, bucket, slices, tmp_path, "other", f"s3://{bucket}/ckpt/other/tiny.pt", "ViT-B-32", capfd)
    assert rc == 2 and "model.initCheckpoint" in err and "does not fit architecture ViT-B-32" in err, err
    assert f"looks like {TINY}" in err, err
    assert not s3.exists(out + "_SUCCESS")
