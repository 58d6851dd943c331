"""kairo_interfaces: the public types exist with the fields DESIGN.md names."""

from kairo_interfaces.action import DeployModel, ExportModel, TrainModel
from kairo_interfaces.msg import (
    Detection2DArray,
    Model,
    ModelEvent,
    Prediction,
    RobotStatus,
    ShadowReport,
    TrainingMetrics,
    TrainingRun,
)
from kairo_interfaces.srv import DeleteModel, GetModel, GetRun, ListModels, ListRobots, ListRuns, PromoteModel


def fields(msg_type: type) -> set[str]:
    return set(msg_type.get_fields_and_field_types())


def test_train_action_fields() -> None:
    assert {"dataset_id", "robot_id", "task", "name", "architecture", "config"} == fields(TrainModel.Goal)
    assert {"epochs", "learning_rate", "batch_size"} == fields(type(TrainModel.Goal().config))
    assert {"model_id", "run_id", "status", "position_in_queue", "epoch", "epochs_total", "loss",
            "val_loss", "estimated_remaining_s"} == fields(TrainModel.Feedback)
    assert {"model_id", "run_id", "model_version", "status", "metrics", "duration_s",
            "message"} == fields(TrainModel.Result)


def test_export_action_fields() -> None:
    assert {"model_id", "format", "version", "output_dir"} == fields(ExportModel.Goal)
    assert {"stage", "bytes_received", "bytes_total"} == fields(ExportModel.Feedback)
    assert {"path", "download_url", "expires_at", "format", "size_mb", "sha256",
            "message"} == fields(ExportModel.Result)


def test_services_answer_in_band() -> None:
    for srv in (PromoteModel, ListModels, GetModel, ListRuns, GetRun, DeleteModel, ListRobots):
        assert {"success", "message"} <= fields(srv.Response), srv
    assert "logs" in fields(GetRun.Response)


def test_messages_use_api_field_names() -> None:
    assert {"final_loss", "val_loss", "accuracy", "val_accuracy", "epochs_run",
            "inference_latency_p99_ms"} == fields(TrainingMetrics)
    assert {"id", "name", "task", "status", "active_version", "accuracy", "robot_id",
            "created_at"} <= fields(Model)
    assert {"run_id", "model_id", "status", "started_at", "completed_at", "duration_s", "metrics",
            "model_version", "artifact_size_mb"} <= fields(TrainingRun)
    assert {"stamp", "event", "model_id", "version", "robot_id", "task", "robots"} == fields(ModelEvent)
    assert {"header", "model_id", "model_version", "data", "latency", "clamped"} == fields(Prediction)
    assert ModelEvent.PROMOTED == "promoted"
    assert {"header", "detections"} == fields(Detection2DArray)


def test_fleet_types_follow_the_contract() -> None:
    assert (ModelEvent.DEPLOYED, ModelEvent.ROLLED_BACK, ModelEvent.WIDENED) == ("deployed", "rolled_back", "widened")
    assert {"id", "node", "task", "model_id", "version", "sha256", "lifecycle_state", "status", "last_seen",
            "rate_hz", "latency_p50_ms", "latency_p99_ms", "dropped", "errors", "shadow_version",
            "shadow_divergence"} == fields(RobotStatus)
    assert {"task"} == fields(ListRobots.Request)
    assert {"success", "message", "robots"} == fields(ListRobots.Response)
    assert {"model_id", "version", "mode", "robots", "percent", "max_error_rate", "max_drop_rate",
            "max_divergence", "min_observation_s", "report_within_s", "wait_for_complete"} == fields(DeployModel.Goal)
    assert {"deployment_id", "state", "robots_reporting", "robots_targeted",
            "guard_state"} == fields(DeployModel.Feedback)
    assert {"success", "deployment_id", "state", "reason"} == fields(DeployModel.Result)
    assert {"samples", "errors", "dropped", "divergence", "outputs", "mean_abs_diff", "max_abs_diff",
            "within_tolerance", "tolerance", "candidate_version"} <= fields(ShadowReport)
