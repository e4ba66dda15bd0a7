"""The streaming tar reader: WebDataset grouping, byte offsets to reopen at, corrupt input (no S3)."""

import io
import tarfile

import pytest

from ticclip_trainer.data import TarSamples, iter_tar
from ticclip_trainer.errors import PermanentError


def _tar(names: list[str], fmt=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name in names:
            data = name.encode() * 3
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_tar_samples_groups_members_and_reopens_at_each_offset(fmt):
    long = "p/" + "k" * (150 if fmt != tarfile.USTAR_FORMAT else 90)
    names = [f"{k}.{e}" for k in ("p/a", long, "p/b.x", "q/c") for e in ("jpg", "txt")]
    raw = _tar(names, fmt)
    t = TarSamples(io.BytesIO(raw), "u", "f")
    got, offsets = [], []
    while not t.exhausted:
        offsets.append(t.offset)
        key, parts = t.next()
        got.append((key, sorted(parts)))
    assert got == [
        ("p/a", ["jpg", "txt"]),
        (long, ["jpg", "txt"]),
        ("p/b", ["x.jpg", "x.txt"]),
        ("q/c", ["jpg", "txt"]),
    ]
    for i, off in enumerate(offsets):
        again = TarSamples(io.BytesIO(raw[off:]), "u", "f", off)
        assert again.next()[0] == got[i][0]


def test_iter_tar_rejects_garbage_and_missing_captions():
    with pytest.raises(PermanentError, match="corrupt shard u"):
        list(iter_tar(io.BytesIO(b"this is not a tar file" * 100), "u", "f"))
    with pytest.raises(PermanentError, match="sample 'k': noCaption"):
        list(iter_tar(io.BytesIO(_tar(["k.png"])), "u", "f"))
    for cut in (700, 1100):  # inside a member's padding, inside a header
        with pytest.raises(PermanentError, match="truncated"):
            list(iter_tar(io.BytesIO(_tar(["k.png", "k.txt"])[:cut]), "u", "f"))
