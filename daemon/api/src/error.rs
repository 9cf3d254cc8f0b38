use axum::Json;
use axum::response::{IntoResponse, Response};
use berth_agent::AgentError;
use berth_core::dto::ErrorBody;
use http::StatusCode;

/// Every error a route can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("invalid spec")]
    InvalidSpec { details: Vec<String> },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String, Vec<String>) {
        match self {
            ApiError::Agent(e) => match e {
                AgentError::NoSuchService { .. } | AgentError::NoSuchDeployment { .. } => {
                    (StatusCode::NOT_FOUND, "not_found", e.to_string(), vec![])
                }
                AgentError::Conflict { .. } => {
                    (StatusCode::CONFLICT, "conflict", e.to_string(), vec![])
                }
                AgentError::Invalid { reason, details } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request",
                    reason.clone(),
                    details.clone(),
                ),
                AgentError::Refused { .. } => {
                    (StatusCode::CONFLICT, "refused", e.to_string(), vec![])
                }
                AgentError::Store(inner) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store",
                    format!("the state store failed: {inner}"),
                    vec![],
                ),
                AgentError::Runtime(inner) => (
                    StatusCode::BAD_GATEWAY,
                    "engine",
                    format!("the container engine failed: {inner}"),
                    vec![],
                ),
                AgentError::ShuttingDown => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    e.to_string(),
                    vec![],
                ),
            },
            ApiError::InvalidSpec { details } => (
                StatusCode::BAD_REQUEST,
                "invalid_spec",
                format!("{} problem(s) in the spec", details.len()),
                details.clone(),
            ),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone(), vec![]),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone(), vec![]),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone(), vec![]),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, error, details) = self.parts();
        if status.is_server_error() {
            tracing::error!(%status, kind, error, "request failed");
        }
        (
            status,
            Json(ErrorBody {
                kind: kind.to_string(),
                error,
                details,
            }),
        )
            .into_response()
    }
}
