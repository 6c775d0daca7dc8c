from __future__ import annotations

import pytest

from streamwreck.core.errors import ConfigError
from streamwreck.core.ledger import expiry
from streamwreck.core.settings import (
    MEMCACHED_RELATIVE_EXPIRY_LIMIT,
    SETTINGS_OF,
    ApiSettings,
    LedgerSettings,
    ProcessorSettings,
    RecorderSettings,
    load_settings,
)


def test_defaults_load_without_any_variable() -> None:
    settings = load_settings(ApiSettings)
    assert settings.servers == [("127.0.0.1", 11211)]
    assert settings.max_records_per_request == 10_000


def test_invalid_value_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMWRECK_LEDGER_TTL_SECONDS", "soon")
    with pytest.raises(ConfigError) as info:
        load_settings(RecorderSettings, queue_url="q")
    assert str(info.value).startswith("STREAMWRECK_LEDGER_TTL_SECONDS: ")
    assert "\n" not in str(info.value)


def test_bad_server_list_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMWRECK_MEMCACHED_SERVERS", "10.0.0.1:11211,nohost")
    with pytest.raises(ConfigError, match=r"^STREAMWRECK_MEMCACHED_SERVERS: expected host:port"):
        load_settings(ApiSettings)


def test_several_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMWRECK_MEMCACHED_SERVERS", "a:1, b:2")
    assert load_settings(LedgerSettings).servers == [("a", 1), ("b", 2)]


def test_missing_required_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^STREAMWRECK_QUEUE_URL is required but not set$"):
        load_settings(RecorderSettings)


def test_the_processor_names_its_first_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMWRECK_STREAM_NAME", "orders")
    with pytest.raises(ConfigError, match=r"^STREAMWRECK_APPLICATION_NAME is required but not set$"):
        load_settings(ProcessorSettings)


def test_an_empty_required_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMWRECK_QUEUE_URL", "")
    with pytest.raises(ConfigError, match=r"^STREAMWRECK_QUEUE_URL: "):
        load_settings(RecorderSettings)


@pytest.mark.parametrize("service", sorted(SETTINGS_OF))
def test_each_deployable_has_its_own_settings_over_the_shared_base(service: str) -> None:
    fields = SETTINGS_OF[service].model_fields
    assert "log_level" in fields
    ledger = {"memcached_servers", "ledger_ttl_seconds"}
    assert (ledger <= fields.keys()) == (service in {"api", "recorder"})


def test_ttl_over_thirty_days_becomes_an_absolute_expiry() -> None:
    now = 1_800_000_000.7
    assert expiry(3600, now) == 3600
    assert expiry(MEMCACHED_RELATIVE_EXPIRY_LIMIT, now) == MEMCACHED_RELATIVE_EXPIRY_LIMIT
    assert expiry(MEMCACHED_RELATIVE_EXPIRY_LIMIT + 1, now) == 1_800_000_000 + MEMCACHED_RELATIVE_EXPIRY_LIMIT + 1
