"""Tokens to principals, role policies read from the protos."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2

from atlasloop.common import auth
from atlasloop.common.errors import InvalidInput, PermissionDenied, Unauthenticated
from atlasloop.common.settings import AuthSettings
from atlasloop.inference.v1 import inference_pb2
from atlasloop.rendering.v1 import rendering_pb2
from atlasloop.scoring.v1 import scoring_pb2
from atlasloop.storage.v1 import storage_pb2
from atlasloop.tracking.v1 import tracking_pb2
from atlasloop.training.v1 import training_pb2

ALL_SERVICES = [
    module.DESCRIPTOR.services_by_name[name]
    for module, name in [
        (storage_pb2, "StorageService"),
        (inference_pb2, "InferenceService"),
        (scoring_pb2, "ScoringService"),
        (rendering_pb2, "RenderingService"),
        (tracking_pb2, "TrackingService"),
        (training_pb2, "TrainingService"),
    ]
]


def test_dev_tokens_map_to_principals():
    authenticator = auth.DevTokenAuthenticator({"t-ann": "alice:annotator", "t-two": "bob:reviewer,admin"})
    assert authenticator.authenticate("t-ann") == auth.Principal("alice", frozenset({auth.Role.ANNOTATOR}))
    assert authenticator.authenticate("t-two").roles == {auth.Role.REVIEWER, auth.Role.ADMIN}
    with pytest.raises(Unauthenticated):
        authenticator.authenticate("t-ann-but-longer")


@pytest.mark.parametrize("spec", ["alice", "alice:", ":annotator", "alice:wizard"])
def test_malformed_dev_token_specs_are_refused(spec):
    with pytest.raises(InvalidInput):
        auth.DevTokenAuthenticator({"t": spec})


@pytest.fixture
def jwks(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public.update(kid="k1", use="sig", alg="RS256")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [public]}))
    settings = AuthSettings(mode="jwt", jwks_file=path, issuer="https://idp.example", audience="atlasloop")
    return key, settings


def _token(key, **claims):
    base = {
        "sub": "carol",
        "roles": ["reviewer"],
        "iss": "https://idp.example",
        "aud": "atlasloop",
        "exp": int(time.time()) + 60,
    }
    return jwt.encode(base | claims, key, algorithm="RS256", headers={"kid": "k1"})


def test_jwt_verified_against_local_key_set(jwks):
    key, settings = jwks
    principal = auth.build_authenticator(settings).authenticate(_token(key))
    assert principal == auth.Principal("carol", frozenset({auth.Role.REVIEWER}))


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(time.time()) - 10},
        {"iss": "https://evil.example"},
        {"aud": "someone-else"},
    ],
)
def test_jwt_with_bad_claims_is_refused(jwks, claims):
    key, settings = jwks
    with pytest.raises(Unauthenticated):
        auth.build_authenticator(settings).authenticate(_token(key, **claims))


def test_jwt_signed_by_another_key_is_refused(jwks):
    _, settings = jwks
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Unauthenticated):
        auth.build_authenticator(settings).authenticate(_token(other))


def test_every_rpc_of_every_service_declares_roles():
    policy = auth.role_policy(ALL_SERVICES)
    methods = sum(len(s.methods) for s in ALL_SERVICES)
    assert len(policy) == methods
    assert policy["/atlasloop.tracking.v1.TrackingService/NextCase"] == {auth.Role.ANNOTATOR}
    assert policy["/atlasloop.training.v1.TrainingService/RollbackModelSet"] == {auth.Role.ADMIN}


def test_a_service_without_role_declarations_cannot_be_served():
    with pytest.raises(InvalidInput, match="declares no required_roles"):
        auth.role_policy([health_pb2.DESCRIPTOR.services_by_name["Health"]])


def test_authorize_needs_one_of_the_roles():
    annotator = auth.Principal("a", frozenset({auth.Role.ANNOTATOR}))
    auth.authorize(annotator, frozenset({auth.Role.ANNOTATOR, auth.Role.ADMIN}), "/x/Y")
    with pytest.raises(PermissionDenied, match="admin"):
        auth.authorize(annotator, frozenset({auth.Role.ADMIN}), "/x/Y")
