"""kairo_ros.api: a typed client for the Kairo Models API.

    from kairo_ros.api import KairoApiClient, KairoError, load_api_key
    with KairoApiClient("http://127.0.0.1:8080", load_api_key(), timeout_s=5) as api:
        link = api.export("mdl_abc123", "onnx")
        api.download(link.download_url, "/tmp/model.onnx", link.sha256)

Errors: see kairo_ros.api.errors (one tree under KairoError).
"""

from kairo_ros.api.client import DownloadResult, KairoApiClient, RetryPolicy, display_url
from kairo_ros.api.credentials import API_KEY_ENV, ApiKey, load_api_key
from kairo_ros.api.errors import (
    KairoApiError,
    KairoArgumentError,
    KairoBadRequestError,
    KairoConflictError,
    KairoConnectionError,
    KairoCredentialsError,
    KairoError,
    KairoForbiddenError,
    KairoIntegrityError,
    KairoNotFoundError,
    KairoRateLimitedError,
    KairoResponseError,
    KairoServerError,
    KairoUnauthorizedError,
    KairoUnavailableError,
    KairoValidationError,
)
from kairo_ros.api.types import (
    DEPLOYMENT_CANCELLED,
    DEPLOYMENT_COMPLETE,
    DEPLOYMENT_ENDED,
    DEPLOYMENT_MODES,
    DEPLOYMENT_OBSERVING,
    DEPLOYMENT_ROLLED_BACK,
    DEPLOYMENT_ROLLING_OUT,
    EXPORT_FORMATS,
    RUN_CANCELLED,
    RUN_COMPLETE,
    RUN_FAILED,
    RUN_FINISHED,
    RUN_QUEUED,
    RUN_RUNNING,
    TASKS,
    Assignment,
    Dataset,
    Deployment,
    DeploymentGuard,
    DeploymentProgress,
    DeploymentRequest,
    ExportLink,
    Metrics,
    Model,
    ModelVersion,
    Page,
    Promotion,
    Robot,
    RobotHealth,
    Run,
    RunProgress,
    ShadowAssignment,
    TrainAccepted,
    TrainingConfig,
    TrainRequest,
)

__all__ = [
    "DEPLOYMENT_CANCELLED", "DEPLOYMENT_COMPLETE", "DEPLOYMENT_ENDED", "DEPLOYMENT_MODES", "DEPLOYMENT_OBSERVING",
    "DEPLOYMENT_ROLLED_BACK", "DEPLOYMENT_ROLLING_OUT", "Assignment", "Deployment", "DeploymentGuard",
    "DeploymentProgress", "DeploymentRequest", "Robot", "RobotHealth", "ShadowAssignment",
    "API_KEY_ENV", "EXPORT_FORMATS", "RUN_CANCELLED", "RUN_COMPLETE", "RUN_FAILED", "RUN_FINISHED",
    "RUN_QUEUED", "RUN_RUNNING", "TASKS",
    "ApiKey", "Dataset", "DownloadResult", "ExportLink", "KairoApiClient", "KairoApiError",
    "KairoArgumentError", "KairoBadRequestError", "KairoConflictError", "KairoConnectionError",
    "KairoCredentialsError", "KairoError", "KairoForbiddenError", "KairoIntegrityError", "KairoNotFoundError",
    "KairoRateLimitedError", "KairoResponseError", "KairoServerError", "KairoUnauthorizedError",
    "KairoUnavailableError", "KairoValidationError", "Metrics", "Model", "ModelVersion", "Page", "Promotion",
    "RetryPolicy", "Run", "RunProgress", "TrainAccepted", "TrainRequest", "TrainingConfig", "display_url",
    "load_api_key",
]
