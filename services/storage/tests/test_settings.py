"""Storage settings refuse a de-identification that could not work or contradicts itself."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from atlasloop.storage.settings import StorageSettings


def test_deidentification_needs_a_key_of_16_bytes():
    with pytest.raises(ValidationError, match="deidentify_key of at least 16 bytes"):
        StorageSettings(deidentify=True)
    with pytest.raises(ValidationError, match="deidentify_key of at least 16 bytes"):
        StorageSettings(deidentify=True, deidentify_key="too-short")
    assert StorageSettings(deidentify=True, deidentify_key="x" * 16).deidentify


def test_deidentification_and_keeping_patient_identifiers_exclude_each_other():
    with pytest.raises(ValidationError, match="contradict"):
        StorageSettings(deidentify=True, deidentify_key="x" * 32, keep_patient_identifiers=True)


def test_the_key_never_shows_in_the_settings_text(monkeypatch):
    monkeypatch.setenv("ATLASLOOP_STORAGE_DEIDENTIFY", "true")
    monkeypatch.setenv("ATLASLOOP_STORAGE_DEIDENTIFY_KEY", "secret-key-material-0123")
    settings = StorageSettings()
    assert settings.deidentify and "secret-key-material" not in repr(settings)


def test_sending_approved_labels_needs_a_pacs():
    with pytest.raises(ValidationError, match=r"needs pacs\.url"):
        StorageSettings(pacs={"send_approved": True})
    assert StorageSettings(pacs={"send_approved": True, "url": "http://pacs/dicom-web"}).pacs.send_approved
