"""API objects (kairo_ros.api.types) to kairo_interfaces messages.

ROS fields have no null: an absent number becomes 0.0 and an absent string
"" (the message definitions say which fields are empty until when).
"""

from __future__ import annotations

import datetime
import math

from builtin_interfaces.msg import Time

from kairo_interfaces.action import TrainModel
from kairo_interfaces.msg import Model as ModelMsg
from kairo_interfaces.msg import ModelVersion as ModelVersionMsg
from kairo_interfaces.msg import Promotion as PromotionMsg
from kairo_interfaces.msg import RobotStatus
from kairo_interfaces.msg import TrainingConfig as TrainingConfigMsg
from kairo_interfaces.msg import TrainingMetrics as TrainingMetricsMsg
from kairo_interfaces.msg import TrainingRun as TrainingRunMsg
from kairo_ros.api import Metrics, Model, ModelVersion, Promotion, Robot, Run, TrainingConfig


def _f(value: float | None) -> float:
    return 0.0 if value is None else float(value)


def time_msg(iso: str) -> Time:
    """An ISO 8601 UTC time as builtin_interfaces/Time; zero when absent or unreadable."""
    try:
        stamp = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return Time()
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    seconds = stamp.timestamp()
    return Time(sec=int(seconds // 1), nanosec=int(round((seconds % 1) * 1e9)) % 1_000_000_000)


def metrics_msg(metrics: Metrics | None) -> TrainingMetricsMsg:
    if metrics is None:
        return TrainingMetricsMsg()
    return TrainingMetricsMsg(final_loss=_f(metrics.final_loss), val_loss=_f(metrics.val_loss),
                              accuracy=_f(metrics.accuracy), val_accuracy=_f(metrics.val_accuracy),
                              epochs_run=max(0, metrics.epochs_run),
                              inference_latency_p99_ms=_f(metrics.inference_latency_p99_ms))


def config_msg(config: TrainingConfig) -> TrainingConfigMsg:
    return TrainingConfigMsg(epochs=max(0, config.epochs), learning_rate=float(config.learning_rate),
                             batch_size=max(0, config.batch_size))


def config_from_msg(msg: TrainingConfigMsg) -> TrainingConfig:
    return TrainingConfig(epochs=int(msg.epochs), learning_rate=float(msg.learning_rate),
                          batch_size=int(msg.batch_size))


def version_msg(version: ModelVersion) -> ModelVersionMsg:
    return ModelVersionMsg(version=version.version, run_id=version.run_id, status=version.status,
                           created_at=version.created_at, metrics=metrics_msg(version.metrics),
                           artifact_size_mb=_f(version.artifact_size_mb), sha256=version.sha256)


def promotion_msg(promotion: Promotion) -> PromotionMsg:
    return PromotionMsg(at=promotion.at, from_version=promotion.from_version, to_version=promotion.to_version)


def model_msg(model: Model) -> ModelMsg:
    return ModelMsg(id=model.id, name=model.name, task=model.task, status=model.status,
                    active_version=model.active_version, accuracy=_f(model.accuracy), robot_id=model.robot_id,
                    created_at=model.created_at, updated_at=model.updated_at, metrics=metrics_msg(model.metrics),
                    versions=[version_msg(v) for v in model.versions],
                    promotions=[promotion_msg(p) for p in model.promotions])


def run_msg(run: Run) -> TrainingRunMsg:
    return TrainingRunMsg(run_id=run.run_id, model_id=run.model_id, status=run.status, created_at=run.created_at,
                          started_at=run.started_at, completed_at=run.completed_at, duration_s=_f(run.duration_s),
                          metrics=metrics_msg(run.metrics), model_version=run.model_version,
                          artifact_size_mb=_f(run.artifact_size_mb), dataset_id=run.dataset_id, task=run.task,
                          architecture=run.architecture, config=config_msg(run.config),
                          position_in_queue=max(0, run.position_in_queue), epoch=max(0, run.progress.epoch),
                          epochs_total=max(0, run.progress.epochs_total), error=run.error)


def train_feedback(run: Run) -> TrainModel.Feedback:
    progress = run.progress
    return TrainModel.Feedback(model_id=run.model_id, run_id=run.run_id, status=run.status,
                               position_in_queue=max(0, run.position_in_queue), epoch=max(0, progress.epoch),
                               epochs_total=max(0, progress.epochs_total), loss=_f(progress.loss),
                               val_loss=_f(progress.val_loss),
                               estimated_remaining_s=_f(progress.estimated_remaining_s))


def train_result(run: Run, message: str) -> TrainModel.Result:
    return TrainModel.Result(model_id=run.model_id, run_id=run.run_id, model_version=run.model_version,
                             status=run.status, metrics=metrics_msg(run.metrics), duration_s=_f(run.duration_s),
                             message=message)


def robot_msg(robot: Robot) -> RobotStatus:
    serving, health, shadow = robot.serving or {}, robot.health, robot.shadow or {}
    divergence = shadow.get("divergence")
    return RobotStatus(
        id=robot.id, node=robot.node, task=robot.task, model_id=robot.model_id,
        version=str(serving.get("version") or ""), sha256=str(serving.get("sha256") or ""),
        lifecycle_state=str(serving.get("lifecycle_state") or ""), status=robot.status,
        last_seen=time_msg(robot.last_seen),
        rate_hz=health.rate_hz if health else 0.0, latency_p50_ms=health.latency_p50_ms if health else 0.0,
        latency_p99_ms=health.latency_p99_ms if health else 0.0, dropped=health.dropped if health else 0,
        errors=health.errors if health else 0, shadow_version=str(shadow.get("version") or ""),
        shadow_divergence=float(divergence) if isinstance(divergence, int | float) else math.nan)
