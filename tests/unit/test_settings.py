"""Settings: defaults, STREAMSEG_* environment overrides, validation messages, immutability."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streamseg.settings import Settings

pytestmark = pytest.mark.usefixtures("clean_env")  # no STREAMSEG_* from the shell


def test_defaults__topic_names_are_versioned_v1() -> None:
    s = Settings()
    assert s.topic("clickstream") == "streamseg.clickstream.v1"
    assert s.topic("transactions") == "streamseg.transactions.v1"
    assert s.topic("dlq") == "streamseg.dlq.v1"
    assert s.topic("segment_updates") == "streamseg.segment-updates.v1"
    assert s.input_topics == ("streamseg.clickstream.v1", "streamseg.transactions.v1")


def test_defaults__connect_to_local_kafka_and_redis() -> None:
    s = Settings()
    assert s.kafka_bootstrap_list == ["127.0.0.1:9092"]
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert (s.clock, s.n_segments, s.max_message_bytes) == ("event", 6, 65536)


def test_env_vars__override_connections_and_topic_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSEG_KAFKA_BOOTSTRAP", "k1:9092, k2:9093")
    monkeypatch.setenv("STREAMSEG_REDIS_URL", "rediss://cache.internal:6380/2")
    monkeypatch.setenv("STREAMSEG_TOPIC_CLICKSTREAM", "acme.clicks")
    s = Settings()
    assert s.kafka_bootstrap_list == ["k1:9092", "k2:9093"]
    assert s.redis_url == "rediss://cache.internal:6380/2"
    assert s.topic("clickstream") == "acme.clicks"
    assert s.input_topics == ("acme.clicks", "streamseg.transactions.v1")
    assert s.topic("dlq") == "streamseg.dlq.v1"  # untouched roles keep their defaults


def test_env_var_names__are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("streamseg_topic_dlq", "acme.dead")
    assert Settings().topic("dlq") == "acme.dead"


def test_env_vars__are_parsed_to_typed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSEG_N_SEGMENTS", "8")
    monkeypatch.setenv("STREAMSEG_MAX_FUTURE_SKEW_S", "90.5")
    monkeypatch.setenv("STREAMSEG_CLOCK", "wall")
    s = Settings()
    assert (s.n_segments, s.max_future_skew_s, s.clock) == (8, 90.5, "wall")


def test_explicit_arguments__win_over_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSEG_REDIS_URL", "redis://from-env:6379/0")
    assert Settings(redis_url="redis://explicit:6379/0").redis_url == "redis://explicit:6379/0"


def test_unknown_env_vars__are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSEG_NOT_A_SETTING", "x")
    assert not hasattr(Settings(), "not_a_setting")


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "", "valkey://x"])
def test_invalid_redis_url__is_a_validation_error_saying_which_schemes_work(url: str) -> None:
    with pytest.raises(ValidationError) as err:
        Settings(redis_url=url)
    msg = str(err.value)
    assert "STREAMSEG_REDIS_URL" in msg
    assert "redis://" in msg and "rediss://" in msg


def test_invalid_redis_url_from_env__is_a_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSEG_REDIS_URL", "localhost:6379")
    with pytest.raises(ValidationError, match="STREAMSEG_REDIS_URL must start with redis://"):
        Settings()


@pytest.mark.parametrize("url", ["redis://h:1/0", "rediss://h:1/0", "unix:///run/redis.sock"])
def test_supported_redis_url_schemes__are_accepted(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize("bootstrap", ["", " ", ",", " , ,"])
def test_empty_kafka_bootstrap__is_a_validation_error_asking_for_a_host(bootstrap: str) -> None:
    with pytest.raises(ValidationError) as err:
        Settings(kafka_bootstrap=bootstrap)
    assert "STREAMSEG_KAFKA_BOOTSTRAP must list at least one host:port" in str(err.value)


def test_empty_kafka_bootstrap_from_env__is_a_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSEG_KAFKA_BOOTSTRAP", " , ")
    with pytest.raises(ValidationError, match="STREAMSEG_KAFKA_BOOTSTRAP"):
        Settings()


@pytest.mark.parametrize(
    ("env", "value", "field"),
    [("STREAMSEG_N_SEGMENTS", "1", "n_segments"),
     ("STREAMSEG_CLOCK", "sundial", "clock"),
     ("STREAMSEG_MAX_MESSAGE_BYTES", "100", "max_message_bytes"),
     ("STREAMSEG_WEB_PORT", "70000", "web_port"),
     ("STREAMSEG_BATCH_MAX", "lots", "batch_max")],
)
def test_out_of_range_env_values__are_validation_errors_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, field: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError, match=field):
        Settings()


def test_settings__are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        s.redis_url = "redis://elsewhere:6379/0"  # type: ignore[misc]
    assert s.redis_url == "redis://127.0.0.1:6379/0"


def test_settings__are_hashable_values() -> None:
    assert Settings(seed=1) == Settings(seed=1)
    assert hash(Settings(seed=1)) == hash(Settings(seed=1))
    assert Settings(seed=1) != Settings(seed=2)
