//! Events: everything berthd decides or observes, with a node-wide sequence
//! number that survives restarts. `berthctl events`, the API stream and the
//! logs render these same values.

use serde::{Deserialize, Serialize};

use crate::record::{DeployAction, Status};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    /// Unix milliseconds.
    pub at_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    DeploymentStatus {
        service: String,
        deployment: String,
        action: DeployAction,
        status: Status,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
    /// berthd did something to a container, and why.
    ContainerAction {
        service: String,
        action: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        container: String,
        reason: String,
    },
    /// The engine reported something berthd did not do itself.
    ContainerObserved {
        service: String,
        container: String,
        action: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i64>,
    },
    EngineState {
        reachable: bool,
        detail: String,
    },
    ServiceHeld {
        service: String,
        held: bool,
    },
    ServiceDeleted {
        service: String,
    },
    RecordUnreadable {
        service: String,
        path: String,
        error: String,
    },
    Daemon {
        message: String,
    },
}

impl EventKind {
    pub fn service(&self) -> Option<&str> {
        match self {
            EventKind::DeploymentStatus { service, .. }
            | EventKind::ContainerAction { service, .. }
            | EventKind::ContainerObserved { service, .. }
            | EventKind::ServiceHeld { service, .. }
            | EventKind::ServiceDeleted { service }
            | EventKind::RecordUnreadable { service, .. } => Some(service),
            EventKind::EngineState { .. } | EventKind::Daemon { .. } => None,
        }
    }

    /// One line for logs and `berthctl events`.
    pub fn summary(&self) -> String {
        match self {
            EventKind::DeploymentStatus {
                service,
                deployment,
                action,
                status,
                reason,
            } => {
                let mut s = format!("{service}: deployment {deployment} ({action}) is {status}");
                if !reason.is_empty() {
                    s.push_str(": ");
                    s.push_str(reason);
                }
                s
            }
            EventKind::ContainerAction {
                service,
                action,
                container,
                reason,
            } => {
                if container.is_empty() {
                    format!("{service}: {action} ({reason})")
                } else {
                    format!("{service}: {action} {container} ({reason})")
                }
            }
            EventKind::ContainerObserved {
                service,
                container,
                action,
                exit_code,
            } => match exit_code {
                Some(code) => {
                    format!("{service}: container {container} {action} (exit code {code})")
                }
                None => format!("{service}: container {container} {action}"),
            },
            EventKind::EngineState { reachable, detail } => {
                if *reachable {
                    format!("engine reachable: {detail}")
                } else {
                    format!("engine unreachable: {detail}")
                }
            }
            EventKind::ServiceHeld { service, held } => {
                if *held {
                    format!("{service}: held (berthd leaves it alone until released)")
                } else {
                    format!("{service}: released")
                }
            }
            EventKind::ServiceDeleted { service } => format!("{service}: deleted"),
            EventKind::RecordUnreadable {
                service,
                path,
                error,
            } => format!(
                "{service}: record {path} is unreadable ({error}); left as is, service not managed until fixed"
            ),
            EventKind::Daemon { message } => message.clone(),
        }
    }
}
