"""Inputs from the field (issue 11) through S3 on the local cluster's store: keys with glob
characters, spaces, `+`, `%`, colons and non-ASCII; hidden names; the run under LC_ALL=C.

The objects are written with boto3 (exact keys, hidden ones included: `orchard push` leaves
hidden files out), read by `orchard run --profile local`, and the output pulled back. The box is
the session's (`local_box`, tests/local/conftest.py: 2 workers of 1 core, S3, HDFS), shared with
the other cluster modules: this one keeps to the bucket orchard-field. The downloads `up` needs
are cached in $ORCHARD_TEST_CACHE_DIR (default ~/.cache/orchard-tests).
"""
from __future__ import annotations

import json

import pytest

from tests.local.boxes import orchard, using_box
from tests.fixtures.tables import table_of

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.xdist_group("cluster")]

BUCKET = "orchard-field"
ROOT = "fruits [v2] {2024} crop*"  # a glob that also matches the sibling prefix
SIBLING = "fruits v 2024 crop"
NAMES = [  # below the root: kinds 2 (colons) and 3 (non-ASCII), with spaces, '+' and '%'
    "Training/Apple/2023-05-01 12:30:45.jpg", "Training/Apple/snapshot::2.jpg", "Training/Apple/ok0.jpg",
    "Training/Grade:A/a+b 100% c.jpg", "Training/Grade:A/%41.jpg", "Training/Pêche/ok0.jpg",
    "Training/Ягода/ok0.jpg", "Training/Fraise 🍓/ok0.jpg", "Training/Mandarine 橘子/ok0.jpg",
]
HIDDEN = ["Training/Apple/_metadata.jpg", "Training/Apple/_a=b.jpg", "Training/Apple/.x.jpg",
          "Training/_tmp/t.jpg"]


@pytest.fixture(scope="module")
def box(local_box):
    """The session's box, for this module."""
    with using_box(local_box) as box:
        yield box


@pytest.fixture(scope="module")
def field_run(box, sample_dir, tmp_path_factory):
    import boto3

    status = box["status"]
    s3 = boto3.client("s3", endpoint_url=status["s3_endpoint"], aws_access_key_id=status["access_key"],
                      aws_secret_access_key=status["secret_key"], region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    images = sorted((sample_dir / "Training" / "Banana").iterdir())
    for index, name in enumerate(NAMES + HIDDEN):
        s3.put_object(Bucket=BUCKET, Key=f"{ROOT}/{name}", Body=images[index].read_bytes())
    for index in range(2):
        s3.put_object(Bucket=BUCKET, Key=f"{SIBLING}/Training/Kiwi/k{index}.jpg", Body=images[index].read_bytes())
    env = {key: value for key, value in box["env"].items() if not key.startswith("LC_") and key != "LANG"}
    env["LC_ALL"] = "C"  # kind 3: the locale of a container or a cron job
    output = f"s3://{BUCKET}/out"
    orchard(env, "run", "--input", f"s3://{BUCKET}/{ROOT}", "--output", output, "--profile", "local",
            "--pca-k", "2")
    pulled = tmp_path_factory.mktemp("pulled") / "out"
    orchard(box["env"], "pull", output, str(pulled), "--profile", "local")
    return pulled


def test_s3_keys_from_the_field_are_featurized_exactly_once_with_their_names(field_run):
    
    record = json.loads((field_run / "run.json").read_text(encoding="utf-8"))
    counts = record["counts"]
    assert counts == {**counts, "found": len(NAMES), "featurized": len(NAMES), "errors": 0, "ignored": 0}
    features = table_of(field_run, "features").to_pandas().set_index("path")
    assert sorted(features.index) == sorted(NAMES)  # kind 1: not the sibling; kind 11: no hidden name
    assert features.loc["Training/Grade:A/a+b 100% c.jpg", "label"] == "Grade:A"  # kind 2
    assert features.loc["Training/Ягода/ok0.jpg", "label"] == "Ягода"  # kind 3
