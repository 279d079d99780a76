"""orchard.cloud.layout: the names every command derives from the bucket."""
from __future__ import annotations

import pytest

from orchard.cloud.layout import NODE_PYTHON, NODE_SYSTEM_PYTHON, NODE_VENV, Layout, check_prefix
from orchard.errors import OrchardError
from tests.cloud.conftest import LAYOUT


def test_long_bucket_names_give_valid_role_names():
    layout = Layout("a" * 63)
    assert len(layout.ec2_role) <= 64 and layout.ec2_role.startswith("orchard-emr-ec2-")
    assert Layout("b" * 63).ec2_role != layout.ec2_role


@pytest.mark.parametrize("name", ["My.Bucket", "ab", "a" * 64, "xn--abc", "bucket-s3alias", "-abc"])
def test_invalid_bucket_names_are_refused(name):
    with pytest.raises(OrchardError, match="invalid bucket name"):
        Layout(name)


def test_keys_and_node_paths():
    assert LAYOUT.wheel_key == f"orchard/wheels/{LAYOUT.wheel_name}"
    assert LAYOUT.wheelhouse_prefix == "orchard/wheelhouse/"
    assert LAYOUT.wheelhouse_lock_key == "orchard/wheelhouse/requirements.txt"
    assert LAYOUT.uri(LAYOUT.bootstrap_key) == "s3://orchard-test-seeds/orchard/emr-bootstrap.sh"
    assert NODE_PYTHON == f"{NODE_VENV}/bin/python" != NODE_SYSTEM_PYTHON
    assert check_prefix("/data/") == "data/" and check_prefix("") == ""
    with pytest.raises(OrchardError):
        check_prefix("data/../x")
