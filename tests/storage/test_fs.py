"""The filesystem door: the same operations on a local disk, on S3 (moto's server on 127.0.0.1,
reached through an endpoint and keys, as the local cluster's SeaweedFS is) and through Hadoop's
FileSystem (the JVM gateway, on `file:` URIs; HDFS itself is in the local-cluster integration
test)."""
from __future__ import annotations

import hashlib
import os
import socket

import pytest

from orchard.storage.fs import (
    PART_SIZE,
    HadoopFiles,
    S3Settings,
    Storage,
    file_digests,
    is_hidden,
    split_uri,
)

ODD = "odd name #1 %41 ü.txt"  # characters a URI parser would take apart


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on a free port of 127.0.0.1, for the module."""
    moto_server = pytest.importorskip("moto.server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Settings(endpoint_url=f"http://127.0.0.1:{port}", access_key="orchard", secret_key="secret",
                         region="us-east-1", path_style=True)
    finally:
        server.stop()


@pytest.fixture(params=["local", "s3", "hadoop"])
def place(request, tmp_path, s3_server):
    """(storage, root URI) of an empty folder on each backend."""
    if request.param == "local":
        return Storage(), str(tmp_path / "root")
    if request.param == "s3":
        storage = Storage(s3=s3_server)
        bucket = f"fs-{request.node.name.split('[')[0][-30:].replace('_', '-')}".lower()
        storage.make_dirs(f"s3://{bucket}")
        return storage, f"s3://{bucket}/root"
    storage = Storage()
    storage._local = HadoopFiles({})  # every file: URI through Hadoop's LocalFileSystem
    return storage, "file:" + str(tmp_path / "root")


def test_write_list_read_size_delete(place):
    storage, root = place
    assert not storage.exists(root) and storage.list(root) == []
    storage.write_bytes(f"{root}/a/one.bin", b"1" * 10)
    storage.write_bytes(f"{root}/a/b/two.bin", b"22")
    storage.write_bytes(f"{root}/{ODD}", b"")
    storage.write_bytes(f"{root}/_SUCCESS", b"")
    assert storage.exists(root) and storage.is_dir(root) and storage.is_dir(f"{root}/a")
    assert storage.exists(f"{root}/a/one.bin") and not storage.is_dir(f"{root}/a/one.bin")
    assert not storage.exists(f"{root}/absent")
    listed = [(info.name, info.size) for info in storage.list(root) if not info.name.endswith(".crc")]
    assert listed == [("_SUCCESS", 0), ("a/b/two.bin", 2), ("a/one.bin", 10), (ODD, 0)]
    assert [n for n in storage.list_names(root) if not n.endswith(".crc")] == sorted(["_SUCCESS", "a", ODD])
    assert storage.read_bytes(f"{root}/a/b/two.bin") == b"22"
    with storage.open(f"{root}/a/one.bin") as handle:
        assert handle.read() == b"1" * 10
    assert storage.size(f"{root}/a/one.bin") == 10 and storage.size(f"{root}/{ODD}") == 0
    with pytest.raises(FileNotFoundError):
        storage.size(f"{root}/absent")
    storage.write_bytes(f"{root}/a/one.bin", b"replaced")  # replaces, leaves no temporary file
    assert storage.read_bytes(f"{root}/a/one.bin") == b"replaced"
    assert not [i.name for i in storage.list(root) if "orchard-tmp" in i.name]
    assert storage.delete(f"{root}/a")
    assert not storage.exists(f"{root}/a/b/two.bin")
    assert storage.exists(f"{root}/{ODD}")
    assert storage.delete(root) and not storage.exists(root)
    assert not storage.delete(root)


def test_copies_to_and_from_local_files(place, tmp_path):
    storage, root = place
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(PART_SIZE + 100))
    small = tmp_path / "small.jpg"
    small.write_bytes(b"jpeg")
    storage.make_dirs(root)
    sizes = []
    storage.put_file(big, f"{root}/x/big.bin", progress=sizes.append)
    storage.put_file(small, f"{root}/{ODD}")
    assert sum(sizes) == big.stat().st_size
    infos = {i.name: i for i in storage.list(root) if not i.name.endswith(".crc")}
    assert {name: info.size for name, info in infos.items()} == {"x/big.bin": PART_SIZE + 100, ODD: 4}
    if root.startswith("s3://"):  # multipart ETag as orchard computes it; the MD5 kept as metadata
        assert infos["x/big.bin"].etag == file_digests(big)[1] and infos["x/big.bin"].etag.endswith("-2")
        assert storage.stored_md5(f"{root}/x/big.bin") == hashlib.md5(big.read_bytes()).hexdigest()
    else:
        assert storage.stored_md5(f"{root}/x/big.bin") is None
    back = tmp_path / "back.bin"
    storage.get_file(f"{root}/x/big.bin", back)
    assert back.read_bytes() == big.read_bytes()
    storage.get_file(f"{root}/{ODD}", tmp_path / "odd")
    assert (tmp_path / "odd").read_bytes() == b"jpeg"


def test_qualify():
    assert Storage().qualify("runs/x") == "file:" + os.path.abspath("runs/x")
    assert Storage().qualify("file:///tmp/a%20b") == "file:/tmp/a b"
    assert Storage().qualify("s3://bucket/key") == "s3://bucket/key"


def test_s3_settings_from_hadoop_keys():
    settings = S3Settings.from_hadoop({"fs.s3a.endpoint": "127.0.0.1:8333", "fs.s3a.connection.ssl.enabled": "false",
                                       "fs.s3a.access.key": "k", "fs.s3a.secret.key": "s",
                                       "fs.s3a.path.style.access": "true", "fs.s3a.endpoint.region": "us-east-1"})
    assert settings == S3Settings("http://127.0.0.1:8333", "k", "s", "us-east-1", True)
    assert Storage({"spark.hadoop.fs.s3a.endpoint": "https://s3.example"}).s3_settings.endpoint_url == "https://s3.example"
    assert S3Settings.from_hadoop({}) == S3Settings()


def test_names():
    assert split_uri("hdfs:///a b/#c") == ("hdfs", None, "/a b/#c")
    assert split_uri("s3a://bucket") == ("s3a", "bucket", "/")
    assert split_uri("file:/x") == ("file", None, "/x")
    assert is_hidden("_SUCCESS") and is_hidden("a/.b/c") and is_hidden("_tmp/x")
    assert not is_hidden("Training/Apple/0_100.jpg")
