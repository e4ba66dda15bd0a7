"""Settings and S3Settings from the environment, and the default loader worker count (no S3 server)."""

import pytest

from ticclip_trainer.errors import PermanentError
from ticclip_trainer.s3io import S3
from ticclip_trainer.settings import S3Settings, Settings, _cgroup_quota, default_workers, pod_cpus, usable_cpus


@pytest.mark.parametrize("cpus,local_ranks,want", [(2, 1, 1), (16, 1, 15), (16, 8, 1), (96, 8, 11), (1, 1, 1)])
def test_default_workers_share_the_cpus_among_local_ranks(cpus, local_ranks, want):
    assert default_workers(local_ranks, cpus=cpus) == want


def test_pod_cpus_follow_the_cpu_request_capped_by_what_the_container_may_use():
    usable = usable_cpus()
    assert pod_cpus({}) == usable
    assert pod_cpus({"TICCLIP_CPU_REQUEST": "0"}) == usable  # no request: the Downward API gives 0
    assert pod_cpus({"TICCLIP_CPU_REQUEST": "1"}) == 1
    assert pod_cpus({"TICCLIP_CPU_REQUEST": str(usable + 100)}) == usable
    assert Settings.from_env({"TICCLIP_CPU_REQUEST": "1"}, cuda=False).data_workers == 1
    with pytest.raises(PermanentError) as e:
        pod_cpus({"TICCLIP_CPU_REQUEST": "2.5"})
    assert e.value.field == "TICCLIP_CPU_REQUEST"


def test_cgroup_quota_caps_the_cpus(tmp_path):
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert _cgroup_quota(str(tmp_path)) == 2.5
    assert usable_cpus(str(tmp_path)) <= 3
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_quota(str(tmp_path)) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("400000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert _cgroup_quota(str(v1)) == 4


def test_settings_defaults_follow_the_device():
    cpu = Settings.from_env({}, cuda=False)
    gpu = Settings.from_env({}, cuda=True)
    assert (cpu.compile, cpu.fused_adamw) == (False, False)
    assert (gpu.compile, gpu.fused_adamw) == (True, True)
    assert cpu.data_workers >= 1 and cpu.open_shards == 8


def test_settings_env_overrides_and_bad_values_name_the_variable():
    s = Settings.from_env({"TICCLIP_DATA_WORKERS": "0", "TICCLIP_COMPILE": "1", "TICCLIP_OPEN_SHARDS": "3"}, cuda=False)
    assert (s.data_workers, s.compile, s.open_shards) == (0, True, 3)
    for env, name in (
        ({"TICCLIP_DATA_WORKERS": "many"}, "TICCLIP_DATA_WORKERS"),
        ({"TICCLIP_OPEN_SHARDS": "0"}, "TICCLIP_OPEN_SHARDS"),
        ({"TICCLIP_COMPILE": "maybe"}, "TICCLIP_COMPILE"),
    ):
        with pytest.raises(PermanentError, match=name):
            Settings.from_env(env, cuda=False)


@pytest.mark.parametrize(
    "env,style,boto",
    [
        ({"S3_ENDPOINT": "http://minio:9000"}, "Path", "path"),
        ({}, "VirtualHost", "auto"),  # AWS: virtual-hosted for every name that can be a host name
        ({"S3_ENDPOINT": "http://minio:9000", "S3_ADDRESSING_STYLE": "VirtualHost"}, "VirtualHost", "virtual"),
        ({"S3_ADDRESSING_STYLE": "Path"}, "Path", "path"),
    ],
)
def test_s3_settings_addressing_style_from_env_reaches_the_boto3_client(env, style, boto):
    settings = S3Settings.from_env(env)
    assert settings.addressing_style == style
    client = S3(settings).client
    assert client.meta.config.s3["addressing_style"] == boto


def test_s3_settings_from_plan_take_the_plans_style_and_resolve_plans_without_one():
    plan = {"s3": {"region": "eu-west-1", "endpoint": "http://ceph:80", "addressingStyle": "VirtualHost"}}
    assert S3Settings.from_plan(plan, {}).addressing_style == "VirtualHost"
    assert (
        S3Settings.from_plan({"s3": {"region": "eu-west-1", "endpoint": "http://ceph:80"}}, {}).addressing_style
        == "Path"
    )
    assert S3Settings.from_plan({"s3": {"region": "eu-west-1", "endpoint": None}}, {}).addressing_style == "VirtualHost"


def test_s3_client_builds_path_or_virtual_host_urls_as_the_settings_say():
    def url(settings):  # a presigned URL is built locally: the host name shows the addressing
        c = S3(settings).client
        return c.generate_presigned_url("get_object", Params={"Bucket": "data", "Key": "a/b.tar"}).split("?")[0]

    env = {"S3_ENDPOINT": "http://minio:9000", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    assert url(S3Settings.from_env(env)) == "http://minio:9000/data/a/b.tar"
    assert url(S3Settings.from_env({**env, "S3_ADDRESSING_STYLE": "VirtualHost"})) == "http://data.minio:9000/a/b.tar"


def test_s3_settings_bad_values_name_the_variable():
    with pytest.raises(PermanentError) as e:
        S3Settings.from_env({"S3_ADDRESSING_STYLE": "virtual"})
    assert e.value.field == "S3_ADDRESSING_STYLE"
    with pytest.raises(PermanentError) as e:
        S3Settings.from_env({"TICCLIP_S3_MAX_ATTEMPTS": "0"})
    assert e.value.field == "TICCLIP_S3_MAX_ATTEMPTS"
    assert S3Settings.from_env({"TICCLIP_S3_CONNECT_TIMEOUT": "1.5"}).connect_timeout == 1.5
