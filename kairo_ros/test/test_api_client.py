"""kairo_ros.api against a real backend process (and against a port with nothing on it)."""

from __future__ import annotations

import pickle

import pytest

from kairo_ros.api import (
    API_KEY_ENV,
    ApiKey,
    KairoApiClient,
    KairoArgumentError,
    KairoConnectionError,
    KairoCredentialsError,
    RetryPolicy,
    TrainRequest,
    load_api_key,
)
from kairo_ros.processes import free_port

SECRET = "kai_live_never_print_me_0123456789"


# --- credentials -------------------------------------------------------------------
def test_key_file_wins_over_env_and_is_never_printed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key_file = tmp_path / "key"
    key_file.write_text(SECRET + "\n")
    key = load_api_key(key_file, environ={API_KEY_ENV: "kai_live_from_env"})
    assert key.reveal() == SECRET
    assert SECRET not in repr(key) and SECRET not in str(key) and SECRET not in f"{key}"
    with pytest.raises(TypeError):
        pickle.dumps(key)
    assert load_api_key(None, environ={API_KEY_ENV: " kai_live_from_env "}).reveal() == "kai_live_from_env"
    client = KairoApiClient("http://127.0.0.1:9", key)
    assert SECRET not in repr(client) and SECRET not in str(vars(client).get("_key"))
    client.close()


def test_missing_or_bad_key_says_what_to_do(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(KairoCredentialsError, match=API_KEY_ENV):
        load_api_key(None, environ={})
    missing = tmp_path / "nope"
    with pytest.raises(KairoCredentialsError, match=str(missing)):
        load_api_key(missing, environ={API_KEY_ENV: SECRET})
    two_words = tmp_path / "two"
    two_words.write_text(f"{SECRET} {SECRET}")
    with pytest.raises(KairoCredentialsError) as caught:
        load_api_key(two_words)
    assert SECRET not in str(caught.value) and str(two_words) in str(caught.value)
    with pytest.raises(KairoCredentialsError):
        ApiKey("   ")


def test_bad_arguments_fail_before_any_request() -> None:
    with KairoApiClient(f"http://127.0.0.1:{free_port()}", SECRET, timeout_s=1) as api:
        with pytest.raises(KairoArgumentError, match="model_id is empty"):
            api.get_model("")
        with pytest.raises(KairoArgumentError, match="ros2-pkg"):
            api.export("mdl_x", "tflite")
        with pytest.raises(KairoArgumentError, match="dataset_id"):
            api.train(TrainRequest("", "rob_1", "manipulation"))
        with pytest.raises(KairoArgumentError, match="64 hex"):
            api.download("/downloads/x", "/tmp/never", "abc")
    with pytest.raises(KairoArgumentError, match="http"):
        KairoApiClient("127.0.0.1:8080", SECRET)


# --- transport ---------------------------------------------------------------------
def test_nothing_listening_is_a_connection_error_bounded_by_the_deadline() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    # So many tries allowed that only the deadline can end the call.
    with KairoApiClient(url, SECRET, timeout_s=1.0, retry=RetryPolicy(attempts=10_000, backoff_s=0.05,
                                                                      max_backoff_s=0.1)) as api, \
            pytest.raises(KairoConnectionError) as caught:
        api.list_models()
    error = caught.value
    assert error.url == f"{url}/v1/models"
    assert url in str(error) and "api_url" in str(error)
    assert SECRET not in str(error) and SECRET not in repr(error)
    assert 2 <= error.tries < 10_000, "retried, and stopped by the deadline rather than by the try count"

