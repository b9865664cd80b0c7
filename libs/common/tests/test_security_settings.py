"""The security settings are refused when incomplete, before anything starts, with a message that
says what is missing; Kafka's SASL and TLS become librdkafka's settings for every client."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from atlasloop.common.settings import KafkaSettings
from atlasloop.common.tls import ClientTls, ServerTls, open_channel


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"cert_file": "/c.pem"}, "both cert_file and key_file"),
        ({"cert_file": "/c.pem", "key_file": "/k.pem", "require_client_cert": True}, "needs client_ca_file"),
        ({"client_ca_file": "/ca.pem"}, "only be checked on a TLS port"),
    ],
)
def test_incomplete_server_tls_is_refused(settings, message):
    with pytest.raises(ValidationError, match=message):
        ServerTls(**settings)


def test_unreadable_or_non_pem_files_are_named(tmp_path):
    not_pem = tmp_path / "cert.der"
    not_pem.write_bytes(b"\x30\x82 binary")
    with pytest.raises(ValueError, match=r"the TLS key .*cert.der is not PEM"):
        ServerTls(cert_file=not_pem, key_file=not_pem).credentials()
    with pytest.raises(ValueError, match=r"cannot read the CA certificate .*missing.pem"):
        ClientTls(enabled=True, ca_file=tmp_path / "missing.pem").credentials()
    with pytest.raises(ValidationError, match="both cert_file and key_file"):
        ClientTls(enabled=True, cert_file=tmp_path / "c.pem")


def test_a_disabled_client_opens_a_plaintext_channel():
    channel = open_channel("127.0.0.1:1", ClientTls())
    assert type(channel).__name__ == "Channel"  # grpc.insecure_channel's; a secure one needs credentials
    channel.close()


def test_kafka_sasl_ssl_becomes_librdkafka_settings(tmp_path):
    settings = KafkaSettings(
        bootstrap_servers="b-1:9096",
        security_protocol="SASL_SSL",
        sasl_username="atlasloop",
        sasl_password="s3cret",
        ssl_ca_file=tmp_path / "ca.pem",
    )
    assert settings.client_config() == {
        "bootstrap.servers": "b-1:9096",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "atlasloop",
        "sasl.password": "s3cret",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(tmp_path / "ca.pem"),
    }
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump(mode="json"))
    assert settings.with_secrets()["sasl_password"] == "s3cret"  # for a Serve replica only
    mutual = KafkaSettings(security_protocol="SSL", ssl_cert_file=tmp_path / "c.pem", ssl_key_file=tmp_path / "k.pem")
    assert mutual.client_config()["ssl.certificate.location"] == str(tmp_path / "c.pem")
    assert "sasl.username" not in mutual.client_config()
    assert KafkaSettings().client_config() == {"bootstrap.servers": "127.0.0.1:19092", "security.protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"security_protocol": "SASL_SSL", "sasl_username": "a"}, "needs sasl_username and sasl_password"),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "a",
                "sasl_password": "p",
            },
            "over SASL_SSL only",
        ),
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"security_protocol": "SSL", "ssl_key_file": "/k.pem"}, "both ssl_cert_file and ssl_key_file"),
    ],
)
def test_incomplete_kafka_security_is_refused(settings, message):
    with pytest.raises(ValidationError, match=message):
        KafkaSettings(**settings)
