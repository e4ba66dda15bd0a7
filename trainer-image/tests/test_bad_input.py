"""Bad input: each a clear error, exit 2 for permanent ones, and no `_SUCCESS`."""

import io
import tarfile

import open_clip
import torch
from helpers import make_plan, source, train_in_process, write_plan


def _run(tmp_path, plan, capfd):
    rc = train_in_process(write_plan(tmp_path, plan))
    return rc, capfd.readouterr().err


def test_invalid_plan_exits_2_naming_the_field(s3, bucket, slices, tmp_path, capfd):
    plan = make_plan(bucket, "runs/bad/rounds/0000", [source(bucket, "2016", slices["2016"])], 64)
    del plan["optimizer"]["lr"]
    rc, err = _run(tmp_path, plan, capfd)
    assert rc == 2 and "optimizer.lr" in err
    plan = make_plan(bucket, "runs/bad/rounds/0000", [source(bucket, "2016", slices["2016"])], 64)
    plan["data"]["sources"][0]["weight"] = -1
    rc, err = _run(tmp_path, plan, capfd)
    assert rc == 2 and "data.sources[0].weight" in err
    plan["data"]["sources"][0]["weight"] = 1
    plan["model"]["architecture"] = "no-such-model"
    rc, err = _run(tmp_path, plan, capfd)
    assert rc == 2 and "model.architecture" in err
    assert not s3.exists(plan["output"]["uri"] + "_SUCCESS")


def test_missing_shard(s3, bucket, slices, tmp_path, capfd):
    src = source(bucket, "2016", slices["2016"])
    src["shards"][1]["uri"] = f"s3://{bucket}/slices/2016/shard-09999.tar"
    plan = make_plan(bucket, "runs/missing/rounds/0000", [src], 64)
    rc, err = _run(tmp_path, plan, capfd)
    assert rc == 2 and "data.sources[0].shards[1].uri" in err and "shard-09999.tar" in err
    assert not s3.exists(plan["output"]["uri"] + "_SUCCESS")


def test_corrupt_tar_and_a_shard_of_only_bad_samples(s3, bucket, tmp_path, capfd):
    s3.put_bytes(f"s3://{bucket}/corrupt/garbage.tar", b"this is not a tar file" * 100)
    buf = io.BytesIO()  # a valid tar whose only sample lacks its caption: skipped, over any tolerance
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("k0.png")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"\x89PNG"))
    s3.put_bytes(f"s3://{bucket}/corrupt/nocaption.tar", buf.getvalue())
    for i, (name, why) in enumerate((("garbage.tar", "corrupt shard"), ("nocaption.tar", "noCaption"))):
        src = {
            "sliceId": "bad",
            "weight": 1,
            "expectedShare": 1,
            "shards": [{"uri": f"s3://{bucket}/corrupt/{name}", "samples": 10}],
        }
        plan = make_plan(bucket, f"runs/corrupt{i}/rounds/0000", [src], 8, batch=4)
        rc, err = _run(tmp_path, plan, capfd)
        assert rc == 2 and why in err and name in err and "data.sources[0].shards[0].uri" in err, err
        assert not s3.exists(plan["output"]["uri"] + "_SUCCESS")


def test_unreachable_s3_is_transient(bucket, slices, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("TICCLIP_S3_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("TICCLIP_S3_CONNECT_TIMEOUT", "1")
    plan = make_plan(
        bucket, "runs/unreach/rounds/0000", [source(bucket, "2016", slices["2016"])], 64, endpoint="http://127.0.0.1:9"
    )
    rc, err = _run(tmp_path, plan, capfd)
    assert rc not in (0, 2) and "unreachable" in err


def test_init_checkpoint_of_wrong_architecture(s3, bucket, slices, tmp_path, capfd):
    other = open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"image_size": 32, "layers": 1, "width": 32, "head_width": 32, "patch_size": 8},
        text_cfg={"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 1},
    )
    torch.save({"state_dict": other.state_dict()}, tmp_path / "other.pt")
    s3.upload(str(tmp_path / "other.pt"), f"s3://{bucket}/ckpt/other.pt")
    plan = make_plan(
        bucket,
        "runs/wrongarch/rounds/0001",
        [source(bucket, "2016", slices["2016"])],
        64,
        round_=1,
        init=f"s3://{bucket}/ckpt/other.pt",
    )
    rc, err = _run(tmp_path, plan, capfd)
    assert rc == 2 and "model.initCheckpoint" in err and "does not fit" in err
    assert not s3.exists(plan["output"]["uri"] + "_SUCCESS")
