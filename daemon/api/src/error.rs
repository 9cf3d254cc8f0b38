use axum::Json;
use axum::response::{IntoResponse, Response};
use berth_agent::AgentError;
use berth_core::dto::ErrorBody;
use berth_core::policy::PolicyViolation;
use http::StatusCode;

/// Every error a route can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error("invalid spec")]
    InvalidSpec { details: Vec<String> },
    /// A field of the wrong JSON type in an apply body (a number where a
    /// string is expected, ...); `details` has every problem in the body.
    #[error("a field of the wrong JSON type")]
    WrongType { details: Vec<String> },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    /// No credentials, or credentials no token matches (TCP).
    #[error("{0}")]
    Unauthorized(String),
    /// A pushed spec asks for what the node policy forbids (TCP).
    #[error("refused by the node policy")]
    Policy(Vec<PolicyViolation>),
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// Heat documents and the outbox (policy and agent errors are mapped
    /// to `Policy` and `Agent` on the way in).
    #[error(transparent)]
    Upstream(crate::upstream::UpstreamError),
    #[error("{0}")]
    Unavailable(String),
    /// A request this version knows but does not do yet, saying what it
    /// does do: a 422 (the request cannot be carried out as asked), not a
    /// 5xx (nothing failed on the server).
    #[error("{0}")]
    NotImplemented(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String, Vec<String>) {
        match self {
            ApiError::Agent(e) => agent_parts(e),
            ApiError::InvalidSpec { details } => (
                StatusCode::BAD_REQUEST,
                "invalid_spec",
                format!("{} problem(s) in the spec", details.len()),
                details.clone(),
            ),
            ApiError::WrongType { details } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_spec",
                format!(
                    "{} problem(s) in the request, a field of the wrong JSON type among them",
                    details.len()
                ),
                details.clone(),
            ),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone(), vec![]),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone(), vec![]),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone(), vec![]),
            ApiError::Unauthorized(m) => {
                (StatusCode::UNAUTHORIZED, "unauthorized", m.clone(), vec![])
            }
            ApiError::Policy(v) => (
                StatusCode::FORBIDDEN,
                "policy",
                v.first()
                    .map_or_else(|| "refused by the node policy".into(), |v| v.to_string()),
                v.iter().map(ToString::to_string).collect(),
            ),
            ApiError::PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                self.to_string(),
                vec![],
            ),
            ApiError::BodyTimeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                self.to_string(),
                vec![],
            ),
            ApiError::NotImplemented(m) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_implemented",
                m.clone(),
                vec![],
            ),
            ApiError::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                m.clone(),
                vec![],
            ),
            ApiError::Upstream(e) => {
                use crate::upstream::UpstreamError as U;
                match e {
                    U::Invalid { details, .. } => (
                        StatusCode::BAD_REQUEST,
                        "invalid_document",
                        e.to_string(),
                        details.clone(),
                    ),
                    U::NotOurs { .. } => (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "not_ours",
                        e.to_string(),
                        vec![],
                    ),
                    U::Conflict { .. } => (StatusCode::CONFLICT, "conflict", e.to_string(), vec![]),
                    U::Policy(_) | U::Agent(_) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        e.to_string(),
                        vec![],
                    ),
                    U::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone(), vec![]),
                    U::WrongState(m) => (StatusCode::CONFLICT, "wrong_state", m.clone(), vec![]),
                    U::Store(m) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "store",
                        m.clone(),
                        vec![],
                    ),
                }
            }
        }
    }
}

impl From<crate::upstream::UpstreamError> for ApiError {
    fn from(e: crate::upstream::UpstreamError) -> Self {
        use crate::upstream::UpstreamError as U;
        match e {
            U::Policy(v) => ApiError::Policy(v),
            U::Agent(a) => ApiError::Agent(a),
            other => ApiError::Upstream(other),
        }
    }
}

/// What an agent error answers: status, code, message, details.
fn agent_parts(e: &AgentError) -> (StatusCode, &'static str, String, Vec<String>) {
    match e {
        AgentError::NoSuchService { .. } | AgentError::NoSuchDeployment { .. } => {
            (StatusCode::NOT_FOUND, "not_found", e.to_string(), vec![])
        }
        AgentError::Conflict { .. } => (StatusCode::CONFLICT, "conflict", e.to_string(), vec![]),
        AgentError::Invalid { reason, details } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            reason.clone(),
            details.clone(),
        ),
        AgentError::Refused { .. } => (StatusCode::CONFLICT, "refused", e.to_string(), vec![]),
        // With their sources: "...: No space left on device".
        AgentError::Store(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "store",
            berth_core::error_chain(e),
            vec![],
        ),
        AgentError::Runtime(_) => (
            StatusCode::BAD_GATEWAY,
            "engine",
            berth_core::error_chain(e),
            vec![],
        ),
        AgentError::ShuttingDown => (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            e.to_string(),
            vec![],
        ),
        // Answered as its cause is (status and code); the message and the
        // details say what was applied and what was not.
        AgentError::PartlyApplied {
            failed,
            cause,
            done,
            not_applied,
        } => {
            let (status, code, why, _) = agent_parts(cause);
            let message = format!(
                "{failed}: {why}; the apply stopped there. Fix the cause and apply again: what was applied shows as unchanged"
            );
            let details = done
                .iter()
                .map(|d| format!("applied: {d}"))
                .chain(not_applied.iter().map(|s| format!("not applied: {s}")))
                .collect();
            (status, code, message, details)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, error, details) = self.parts();
        if status.is_server_error() {
            tracing::error!(%status, kind, error, "request failed");
        }
        let body = ErrorBody {
            kind: kind.to_string(),
            error,
            details,
        };
        let mut resp = match &self {
            // The first violation's rule and field, for clients to act on.
            ApiError::Policy(v) if !v.is_empty() => {
                let mut value = serde_json::to_value(&body).unwrap_or_default();
                if let (Some(obj), Some(first)) = (value.as_object_mut(), v.first()) {
                    obj.insert("rule".into(), first.rule.into());
                    obj.insert("field".into(), first.field.clone().into());
                }
                (status, Json(value)).into_response()
            }
            _ => (status, Json(body)).into_response(),
        };
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"berthd\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::store::StoreError;

    #[test]
    fn an_apply_stopped_part_way_answers_as_its_cause_and_lists_both_sides() {
        let cause = AgentError::Store(StoreError::Io {
            op: "write",
            path: "/var/lib/berth/services/b/history/1.json".into(),
            source: std::io::Error::from_raw_os_error(28),
        });
        let e = AgentError::PartlyApplied {
            failed: "b".into(),
            cause: Box::new(cause),
            done: vec!["a (a-1)".into()],
            not_applied: vec!["c".into(), "d".into()],
        };
        let (status, code, message, details) = ApiError::Agent(e).parts();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(code, "store");
        assert!(
            message.starts_with(
                "b: the state store failed: cannot write /var/lib/berth/services/b/history/1.json: No space left on device"
            ) && message.ends_with("the apply stopped there. Fix the cause and apply again: what was applied shows as unchanged"),
            "{message}"
        );
        assert_eq!(
            details,
            vec!["applied: a (a-1)", "not applied: c", "not applied: d"]
        );
    }
}
