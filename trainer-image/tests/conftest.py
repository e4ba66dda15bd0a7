import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(__file__))

from ticclip_trainer.s3io import S3, S3Settings  # noqa: E402

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SLICES = ["2016", "2017", "2018", "2019"]


def _no_s3(reason: str):
    if CI:
        pytest.fail(f"S3 tests need a server under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def s3():
    if not os.environ.get("S3_ENDPOINT"):
        _no_s3("S3_ENDPOINT is not set (run dev/cluster.sh up, or export S3_ENDPOINT and AWS_* keys)")
    client = S3(S3Settings.from_env())
    try:
        client.client.list_buckets()
    except Exception as e:  # noqa: BLE001
        _no_s3(f"no S3 server answers at {os.environ['S3_ENDPOINT']}: {e}")
    return client


@pytest.fixture(scope="session")
def bucket(s3):
    name = f"ticclip-test-{uuid.uuid4().hex[:10]}"
    s3.client.create_bucket(Bucket=name)
    yield name
    keys = s3.list_keys(f"s3://{name}/")
    for i in range(0, len(keys), 1000):
        s3.client.delete_objects(Bucket=name, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]})
    s3.client.delete_bucket(Bucket=name)


@pytest.fixture(scope="session")
def slices(s3, bucket):
    """The synthetic dataset on S3: {sliceId: manifest} under s3://<bucket>/slices/<sliceId>/."""
    from ticclip_trainer import synth

    ms = synth.write(
        f"s3://{bucket}/slices", SLICES, train_samples=1200, eval_samples=200, shard_size=150, seed=0, s3=s3
    )
    return {m["sliceId"]: m for m in ms}
