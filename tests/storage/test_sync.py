"""The sync engine: `orchard push`/`pull` and `orchard aws push`, against moto's S3 (in-process).

HDFS is covered by tests/local/test_cluster_integration.py (a real HDFS on 127.0.0.1).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from orchard import progress
from orchard.cli import main
from orchard.cloud.layout import Layout
from orchard.commands.transfer import storage_for
from orchard.errors import OrchardError
from orchard.storage.fs import PART_SIZE, Storage, file_digests, storage_errors
from orchard.storage.sync import StorageTarget, check_remote, local_files, pull, push

moto = pytest.importorskip("moto")


@pytest.fixture
def fake_s3(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    with moto.mock_aws():
        import boto3

        yield boto3.client("s3", region_name="eu-west-3")


def _dataset(root: Path) -> Path:
    for split in ("Training", "Test"):
        for label in ("Apple Braeburn", "Kiwi"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(3):
                (folder / f"{i}_100.jpg").write_bytes(f"{split}/{label}/{i}".encode() * 50)
    return root


def _target(uri: str) -> StorageTarget:
    return StorageTarget(Storage(), uri)


def _objects(s3, bucket: str, prefix: str):
    """{name below prefix: (size, ETag)} of the bucket's objects."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"][len(prefix):]] = (item["Size"], item["ETag"].strip('"'))
    return found


# -- pieces -------------------------------------------------------------------------------------
def test_check_remote():
    storage = Storage()
    assert check_remote("s3://bucket/a/b/", storage) == "s3://bucket/a/b"
    assert check_remote("hdfs://nn:9000/x", storage) == "hdfs://nn:9000/x"
    assert check_remote("hdfs:///x", Storage({"fs.defaultFS": "hdfs://nn:9000"})) == "hdfs:///x"
    for bad in ("/local/path", "file:/x", "s3:///nobucket", "hdfs:///x"):
        with pytest.raises(OrchardError):
            check_remote(bad, storage)


def test_digests_match_single_and_multipart_uploads(tmp_path):
    file = tmp_path / "f"
    file.write_bytes(b"a" * 10 + b"b" * 10 + b"c" * 5)
    md5 = hashlib.md5(file.read_bytes()).hexdigest()
    assert file_digests(file) == (md5, md5)
    parts = [hashlib.md5(b"a" * 10).digest(), hashlib.md5(b"b" * 10).digest(), hashlib.md5(b"c" * 5).digest()]
    assert file_digests(file, part_size=10) == (md5, hashlib.md5(b"".join(parts)).hexdigest() + "-3")


def test_hidden_files_are_left_out_and_counted(tmp_path):
    data = _dataset(tmp_path / "data")
    (data / ".DS_Store").write_bytes(b"x")
    (data / "Training" / "_SUCCESS").write_bytes(b"")
    (data / "_tmp").mkdir()
    (data / "_tmp" / "a.jpg").write_bytes(b"x")
    (data / "features" / "_delta_log").mkdir(parents=True)  # an output's Delta log: copied, its checksums not
    (data / "features" / "_delta_log" / "00000000000000000000.json").write_text("{}")
    (data / "features" / "_delta_log" / ".00000000000000000000.json.crc").write_bytes(b"x")
    files, hidden = local_files(data)
    assert len(files) == 13 and hidden == 4
    assert files[0].name == "Test/Apple Braeburn/0_100.jpg"
    assert "features/_delta_log/00000000000000000000.json" in {f.name for f in files}
    only_hidden = tmp_path / "hidden"
    only_hidden.mkdir()
    (only_hidden / ".x").write_bytes(b"x")
    with pytest.raises(OrchardError, match=r"no files to copy .*\(1 hidden\)"):
        local_files(only_hidden)


# -- push and pull (moved from tests/local/test_cluster.py) ---------------------------------------
def test_push_creates_the_bucket_copies_and_then_skips_identical_files(tmp_path, fake_s3):
    data = _dataset(tmp_path / "data")
    first = push(str(data), _target("s3://fruits/sample"), jobs=4)
    assert (first["files"], first["copied"], first["skipped"], first["hidden"]) == (12, 12, 0, 0)
    keys = {o["Key"] for o in fake_s3.list_objects_v2(Bucket="fruits")["Contents"]}
    assert "sample/Training/Apple Braeburn/0_100.jpg" in keys and len(keys) == 12
    again = push(str(data), _target("s3://fruits/sample"))
    assert (again["copied"], again["skipped"]) == (0, 12)
    (data / "Test" / "Kiwi" / "1_100.jpg").write_bytes(b"changed")
    changed = push(str(data), _target("s3://fruits/sample"))
    assert (changed["copied"], changed["skipped"]) == (1, 11)


def test_pull_round_trips_and_skips_identical_files(tmp_path, fake_s3):
    data = _dataset(tmp_path / "data")
    push(str(data), _target("s3://fruits/sample"))
    fake_s3.put_object(Bucket="fruits", Key="sample/_SUCCESS", Body=b"")
    out = tmp_path / "out"
    first = pull(_target("s3://fruits/sample"), str(out))
    assert (first["copied"], first["hidden"]) == (12, 1)
    for path in data.rglob("*.jpg"):
        assert (out / path.relative_to(data)).read_bytes() == path.read_bytes()
    assert not (out / "_SUCCESS").exists()
    assert pull(_target("s3://fruits/sample"), str(out))["skipped"] == 12
    assert not [p for p in out.rglob("*") if "orchard-tmp" in p.name]
    with pytest.raises(OrchardError, match="nothing to pull"):
        pull(_target("s3://fruits/absent"), str(tmp_path / "none"))


def _multipart_object(s3, bucket: str, key: str, body: bytes, md5: str) -> None:
    """An object whose ETag is not its MD5 (one part: '<md5 of md5>-1'), as with SSE-KMS."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata={"md5": md5})
    part = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=body)
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})


def test_an_object_whose_etag_is_not_an_md5_is_compared_by_its_stored_md5(tmp_path, fake_s3):
    data = _dataset(tmp_path / "data")
    push(str(data), _target("s3://fruits/sample"))
    name = "Test/Kiwi/0_100.jpg"
    body = (data / name).read_bytes()
    _multipart_object(fake_s3, "fruits", f"sample/{name}", body, hashlib.md5(body).hexdigest())
    assert fake_s3.head_object(Bucket="fruits", Key=f"sample/{name}")["ETag"].endswith('-1"')
    assert push(str(data), _target("s3://fruits/sample"))["copied"] == 0
    _multipart_object(fake_s3, "fruits", f"sample/{name}", body, "0" * 32)
    assert push(str(data), _target("s3://fruits/sample"))["copied"] == 1


def test_push_and_pull_need_the_box_for_the_local_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHARD_STATE_DIR", str(tmp_path / "none"))
    with pytest.raises(OrchardError, match="orchard local up` first"):
        storage_for("s3://fruits/x", "local")
    with pytest.raises(OrchardError, match="orchard local up --hdfs"):
        storage_for("hdfs:///x", "local")
    with pytest.raises(OrchardError, match="profile `local` only"):
        storage_for("s3://fruits/x", "emr")
    data = _dataset(tmp_path / "data")
    assert main(["pull", "hdfs:///x", str(tmp_path / "out"), "--profile", "local"]) == 2
    assert main(["push", str(data), "s3://fruits/x", "--profile", "emr"]) == 2


def test_push_command_reports_a_user_error(tmp_path, capsys):
    assert main(["push", str(tmp_path / "absent"), "s3://b/p"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["push", str(tmp_path), "gs://b/p", "--jobs", "0"]) == 2
    assert main(["push", str(tmp_path), "/not/remote"]) == 2
    assert "push and pull copy to and from" in capsys.readouterr().err


def test_storage_errors_become_one_line_user_errors():
    from botocore.exceptions import ClientError

    def denied(**kwargs):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "HeadBucket")

    with pytest.raises(OrchardError, match=r"s3://x/y: .*Access Denied"):
        with storage_errors("s3://x/y"):
            denied()
    with pytest.raises(ValueError):
        with storage_errors("s3://x/y"):
            raise ValueError("not a storage error")


def test_push_command_prints_a_summary(tmp_path, fake_s3, capsys):
    data = _dataset(tmp_path / "data")
    (data / ".DS_Store").write_bytes(b"x")
    assert main(["push", str(data), "s3://fruits/sample", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["files"], summary["copied"], summary["hidden"]) == (12, 12, 1)
    assert summary["target"] == "s3://fruits/sample"
    assert main(["pull", "s3://fruits/sample", str(tmp_path / "out")]) == 0
    assert "0 files copied" not in capsys.readouterr().out


def test_push_and_pull_print_plain_progress_lines_off_a_terminal_and_none_when_quiet(
        tmp_path, fake_s3, capsys, monkeypatch):
    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.0)
    data = _dataset(tmp_path / "data")
    assert main(["push", str(data), "s3://fruits/sample", "--jobs", "1"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("orchard: push")]
    assert len(lines) >= 2 and "\r" not in "".join(lines)
    assert lines[-1].startswith("orchard: push s3://fruits/sample") and "(100%)" in lines[-1]
    assert "12/12 files" in lines[-1]
    assert main(["pull", "s3://fruits/sample", str(tmp_path / "out"), "--quiet"]) == 0
    assert "orchard: pull" not in capsys.readouterr().err


# -- orchard push and orchard aws push: the same objects ----------------------------------------
def test_push_and_aws_push_give_the_same_objects(tmp_path, fake_s3, monkeypatch):
    bucket = "orchard-same"
    fake_s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})
    data = _dataset(tmp_path / "data")
    (data / ".DS_Store").write_bytes(b"junk")
    (data / "Training" / "_SUCCESS").write_bytes(b"")
    (data / "Test" / "Kiwi" / "empty.jpg").write_bytes(b"")
    (data / "Test" / "big.bin").write_bytes(os.urandom(PART_SIZE + 12345))
    wheel = tmp_path / Layout(bucket).wheel_name
    wheel.write_bytes(b"not really a wheel")

    assert main(["push", str(data), f"s3://{bucket}/plain", "--json"]) == 0
    assert main(["aws", "push", str(data), "--bucket", bucket, "--prefix", "cloud/", "--wheel", str(wheel),
                 "--region", "eu-west-3", "--no-progress", "--json"]) == 0

    plain, cloud = _objects(fake_s3, bucket, "plain/"), _objects(fake_s3, bucket, "cloud/")
    assert plain == cloud
    assert len(plain) == 14 and not any(name.startswith((".", "_")) or "/_" in name for name in plain)
    assert plain["Test/Kiwi/empty.jpg"][0] == 0
    assert plain["Test/big.bin"][1].endswith("-2")  # two parts of PART_SIZE
    for name in ("Test/big.bin", "Test/Kiwi/0_100.jpg"):
        heads = [fake_s3.head_object(Bucket=bucket, Key=f"{prefix}{name}") for prefix in ("plain/", "cloud/")]
        assert heads[0]["Metadata"] == heads[1]["Metadata"] == {"md5": file_digests(data / name)[0]}
        assert heads[0]["ContentType"] == heads[1]["ContentType"]
    # each recognises the other's objects as identical
    again = push(str(data), _target(f"s3://{bucket}/cloud"))
    assert (again["copied"], again["skipped"], again["hidden"]) == (0, 14, 2)
