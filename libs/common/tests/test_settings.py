"""What may travel in a request to the Ray cluster (``public``) and how the receiving side puts its
own secrets back (``merged``)."""

from __future__ import annotations

from pydantic import SecretStr

from atlasloop.common.settings import S3Settings, ServiceSettings, merged, public


class _Settings(ServiceSettings):
    s3: S3Settings = S3Settings()
    token: SecretStr = SecretStr("t0ken")


def test_public_drops_every_secret_at_any_depth():
    values = public(_Settings(s3=S3Settings(bucket="b", secret_key=SecretStr("s3cret"))))
    assert "token" not in values and values["s3"]["bucket"] == "b"  # type: ignore[index]
    assert not {"access_key", "secret_key"} & set(values["s3"])  # type: ignore[arg-type]
    assert "s3cret" not in repr(values) and "t0ken" not in repr(values)


def test_merged_keeps_the_receivers_nested_values_it_was_not_sent():
    base = {"s3": {"bucket": "atlasloop", "secret_key": "k"}, "epochs": 1, "tags": {"a": 1}}
    out = merged(base, {"s3": {"bucket": "test"}, "epochs": 3, "tags": {"b": 2}, "new": [1]})
    assert out == {"s3": {"bucket": "test", "secret_key": "k"}, "epochs": 3, "tags": {"a": 1, "b": 2}, "new": [1]}
    assert base["s3"] == {"bucket": "atlasloop", "secret_key": "k"}  # the base is not changed
