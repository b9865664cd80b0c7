"""Where the command line and the client library find the services, and how they reach them."""

from __future__ import annotations

from atlasloop.client.targets import targets_from_env, tls_from_env


def test_targets_default_to_the_workstation_and_follow_the_environment():
    targets = targets_from_env({"ATLASLOOP_TRACKING_TARGET": "tracking.atlasloop:443"})
    assert targets["tracking"] == "tracking.atlasloop:443" and targets["storage"] == "127.0.0.1:50051"


def test_the_command_line_takes_tls_from_the_environment(tmp_path):
    assert tls_from_env({}) is None
    tls = tls_from_env({"ATLASLOOP_TLS_CA": str(tmp_path / "ca.pem"), "ATLASLOOP_TLS_SERVER_NAME": "atlasloop.example"})
    assert tls is not None and tls.enabled and tls.ca_file == tmp_path / "ca.pem" and tls.cert_file is None
    assert tls.server_name == "atlasloop.example"
    system_roots = tls_from_env({"ATLASLOOP_TLS": "1"})
    assert system_roots is not None and system_roots.enabled and system_roots.ca_file is None
