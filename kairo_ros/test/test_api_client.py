"""kairo_ros.api against a real backend process (and against a port with nothing on it)."""

from __future__ import annotations

import hashlib
import os
import pickle
import signal

import pytest

from kairo_ros.api import (
    API_KEY_ENV,
    RUN_COMPLETE,
    ApiKey,
    KairoApiClient,
    KairoApiError,
    KairoArgumentError,
    KairoConflictError,
    KairoConnectionError,
    KairoCredentialsError,
    KairoForbiddenError,
    KairoIntegrityError,
    KairoNotFoundError,
    KairoUnauthorizedError,
    KairoValidationError,
    RetryPolicy,
    TrainingConfig,
    TrainRequest,
    load_api_key,
)
from kairo_ros.testing.graph import wait_until
from kairo_ros.testing.processes import free_port

SECRET = "kai_live_never_print_me_0123456789"


def _sha256(path) -> str:  # type: ignore[no-untyped-def]
    return hashlib.sha256(path.read_bytes()).hexdigest()


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



# --- against the real backend --------------------------------------------------------
@pytest.fixture(scope="module")
def api(backend):  # type: ignore[no-untyped-def]
    with KairoApiClient(backend.url, backend.key, timeout_s=10) as client:
        yield client


@pytest.fixture(scope="module")
def trained(backend, api):  # type: ignore[no-untyped-def]
    """A model with one complete version v1, trained for 3 epochs."""
    dataset_id = backend.cli("datasets", "create-demo", "manipulation", "--workspace", "test", "--samples", "2000")
    accepted = api.train(TrainRequest(dataset_id, "rob_client01", "manipulation", name="client-test",
                                      config=TrainingConfig(epochs=3)))
    wait_until(lambda: api.get_run(accepted.model_id, accepted.run_id).finished, 120, "run to finish")
    run = api.get_run(accepted.model_id, accepted.run_id)
    assert run.status == RUN_COMPLETE, run.error
    return run


def test_typed_answers_match_the_raw_json(backend, api, trained) -> None:  # type: ignore[no-untyped-def]
    assert api.health() == {"status": "ok"}
    with backend.client() as raw:
        raw_run = raw.get(f"/v1/models/{trained.model_id}/runs/{trained.run_id}").json()
        raw_model = raw.get(f"/v1/models/{trained.model_id}").json()
        raw_models = raw.get("/v1/models").json()
    assert trained.model_version == raw_run["model_version"] == "v1"
    assert trained.metrics is not None and trained.metrics.epochs_run == raw_run["metrics"]["epochs_run"] == 3
    assert trained.metrics.val_loss == raw_run["metrics"]["val_loss"]
    assert trained.config.epochs == 3 and trained.dataset_id == raw_run["dataset_id"]
    assert list(trained.logs) == raw_run["logs"] and any("epoch 3/3" in line for line in trained.logs)
    model = api.get_model(trained.model_id)
    assert (model.id, model.robot_id, model.task, model.status) == (
        raw_model["id"], "rob_client01", "manipulation", raw_model["status"])
    v1 = model.version("v1")
    assert v1 is not None and v1.sha256 == raw_model["versions"][0]["sha256"] and len(v1.sha256) == 64
    page = api.list_models()
    assert page.total == raw_models["total"] and trained.model_id in {m.id for m in page.data}
    runs = api.list_runs(trained.model_id)
    assert trained.run_id in {r.run_id for r in runs.data}
    datasets = api.list_datasets()
    assert trained.dataset_id in {d.id for d in datasets.data}
    assert api.get_dataset(trained.dataset_id).task == "manipulation"


def test_api_errors_map_to_classes_with_code_and_message(backend, api, trained) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(KairoNotFoundError) as missing:
        api.get_model("mdl_doesnotexist")
    assert missing.value.status == 404 and missing.value.code == "not_found"
    assert "mdl_doesnotexist" in str(missing.value) and backend.url in str(missing.value)
    with KairoApiClient(backend.url, SECRET, timeout_s=5) as wrong_key, \
            pytest.raises(KairoUnauthorizedError) as unauthorized:
        wrong_key.list_models()
    assert unauthorized.value.code == "unauthorized" and "KAIRO_API_KEY" in str(unauthorized.value)
    assert SECRET not in str(unauthorized.value) and backend.key not in str(unauthorized.value)
    with pytest.raises(KairoValidationError) as invalid:
        api.train(TrainRequest(trained.dataset_id, "rob_client01", "juggling"))
    assert invalid.value.status == 422 and "task" in invalid.value.api_message
    with pytest.raises(KairoConflictError):
        api.cancel_run(trained.model_id, trained.run_id)  # already complete
    with pytest.raises(KairoApiError) as no_version:
        api.promote(trained.model_id, "v99")
    assert no_version.value.status in (404, 409) and "v99" in str(no_version.value)
    # Another workspace sees none of ours: its answers are 404s, as for unknown IDs.
    other_key = backend.cli("keys", "create", "--workspace", "client-other")
    with KairoApiClient(backend.url, other_key, timeout_s=5) as other:
        assert trained.model_id not in {m.id for m in other.list_models().data}
        with pytest.raises(KairoNotFoundError):
            other.get_run(trained.model_id, trained.run_id)
        with pytest.raises(KairoNotFoundError):
            other.train(TrainRequest(trained.dataset_id, "rob_client01", "manipulation"))


def test_promote_export_download_verified(api, trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = api.promote(trained.model_id, "v1")
    assert model.active_version == "v1" and model.promotions[-1].to_version == "v1"
    link = api.export(trained.model_id, "onnx")  # empty version: the active one
    assert link.version == "v1" and link.sha256 == model.version("v1").sha256  # type: ignore[union-attr]
    seen: list[tuple[int, int]] = []
    dest = tmp_path / "models" / "arm.onnx"
    result = api.download(link.download_url, dest, link.sha256,
                          on_progress=lambda got, total: seen.append((got, total)))
    assert result.path == dest and result.sha256 == link.sha256 == _sha256(dest)
    assert seen and seen[-1][0] == result.size_bytes == dest.stat().st_size
    assert sorted(p.name for p in dest.parent.iterdir()) == ["arm.onnx"], "no temporary file left"


def test_corrupt_or_tampered_downloads_leave_nothing(api, trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    link = api.export(trained.model_id, "onnx", "v1")
    dest = tmp_path / "arm.onnx"
    dest.write_bytes(b"the previous model")
    with pytest.raises(KairoIntegrityError) as corrupt:
        api.download(link.download_url, dest, "0" * 64)
    assert corrupt.value.actual_sha256 == link.sha256 and "request the export again" in str(corrupt.value)
    assert dest.read_bytes() == b"the previous model", "a failed download never touches the destination"
    tampered = link.download_url.replace("sig=", "sig=0")
    with pytest.raises(KairoForbiddenError) as forbidden:
        api.download(tampered, dest, link.sha256)
    assert forbidden.value.status == 403 and "sig=" not in str(forbidden.value), "the signature stays secret"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arm.onnx"]
    assert dest.read_bytes() == b"the previous model"


def test_delete_model(api, backend, trained) -> None:  # type: ignore[no-untyped-def]
    accepted = api.train(TrainRequest(trained.dataset_id, "rob_client02", "manipulation",
                                      config=TrainingConfig(epochs=1)))
    api.delete_model(accepted.model_id)
    with pytest.raises(KairoNotFoundError):
        api.get_model(accepted.model_id)
    with backend.client() as raw:
        assert raw.get(f"/v1/models/{accepted.model_id}").status_code == 404


def test_a_train_that_may_have_arrived_is_never_sent_twice(backend) -> None:  # type: ignore[no-untyped-def]
    """With the server frozen, the request is delivered but not answered: GETs retry, POST train does not."""
    key = backend.cli("keys", "create", "--workspace", "client-frozen")
    dataset_id = backend.cli("datasets", "create-demo", "manipulation", "--workspace", "client-frozen",
                             "--samples", "500")
    pid = backend.process.popen.pid
    # Tries capped at 0.5 s within a 2 s deadline: room for GET to try again.
    policy = RetryPolicy(attempts=10, backoff_s=0.05, attempt_timeout_s=0.5)
    with KairoApiClient(backend.url, key, timeout_s=2.0, retry=policy) as frozen:
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(KairoConnectionError) as train_error:
                frozen.train(TrainRequest(dataset_id, "rob_frozen01", "manipulation", config=TrainingConfig(epochs=1)))
            with pytest.raises(KairoConnectionError) as list_error:
                frozen.list_models()
        finally:
            os.kill(pid, signal.SIGCONT)
        assert train_error.value.tries == 1, "POST train is not repeated once it may have been received"
        assert list_error.value.tries >= 2, "idempotent GETs are retried within the deadline"
        assert backend.url in str(train_error.value) and key not in str(train_error.value)
        wait_until(lambda: frozen.health()["status"] == "ok", 30, "backend answering again")
        models = frozen.list_models(timeout_s=10)
        assert sum(len(frozen.list_runs(m.id).data) for m in models.data) <= 1
