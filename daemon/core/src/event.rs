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
        /// Who asked for the deployment (`uid:0`, `token:admin:…`, `pull`, …).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        actor: String,
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
    /// A config source's content changed (or became unreadable, or was
    /// forced by an operator).
    ConfigChanged {
        service: String,
        /// The combined hashes of the service's config.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old_hash: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_hash: Option<String>,
        /// Changed files as `source/relative-path` (at most 20; `more` counts the rest).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<String>,
        #[serde(default, skip_serializing_if = "is_zero")]
        more: usize,
        /// What berthd does about it (`signal SIGHUP`, `restart`, ...), or the error.
        reaction: String,
    },
    /// A host unit a service orders against (`after_units`,
    /// `requires_units`) changed state, and what that means for the service.
    UnitState {
        service: String,
        unit: String,
        /// `active`, `inactive`, `failed`, `not-found`, ... (systemd's words).
        state: String,
        /// What berthd does about it.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        effect: String,
    },
    /// An upstream signal (a Heat deployment's outcome) was delivered, will
    /// be retried, or was refused for good (a dead letter).
    Signal {
        /// The Heat document id.
        document: String,
        /// The outbox entry (`berthctl outbox list`); not `seq`, which every
        /// event has.
        entry: u64,
        /// `delivered`, `retry` or `dead`.
        outcome: String,
        /// Where it goes, without secrets (no signature, no password).
        target: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// An image being pulled for a service: its start, its progress (at
    /// most one a second), and its end (`done`; `failed` when it ended in
    /// an error, which the deployment's status names).
    ImagePull {
        service: String,
        /// The reference pulled (references carry no credentials).
        reference: String,
        layers_done: u32,
        layers_total: u32,
        bytes_done: u64,
        bytes_total: u64,
        done: bool,
        /// The pull ended in an error (the deployment's status says which).
        #[serde(default, skip_serializing_if = "is_false")]
        failed: bool,
    },
    Daemon {
        message: String,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// At most this many changed files are named in one event.
pub const EVENT_FILES_MAX: usize = 20;

impl EventKind {
    pub fn service(&self) -> Option<&str> {
        match self {
            EventKind::DeploymentStatus { service, .. }
            | EventKind::ContainerAction { service, .. }
            | EventKind::ContainerObserved { service, .. }
            | EventKind::ServiceHeld { service, .. }
            | EventKind::ServiceDeleted { service }
            | EventKind::ConfigChanged { service, .. }
            | EventKind::UnitState { service, .. }
            | EventKind::ImagePull { service, .. }
            | EventKind::RecordUnreadable { service, .. } => Some(service),
            EventKind::EngineState { .. } | EventKind::Signal { .. } | EventKind::Daemon { .. } => {
                None
            }
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
                actor,
            } => {
                let mut s = format!("{service}: deployment {deployment} ({action}) is {status}");
                if !reason.is_empty() {
                    s.push_str(": ");
                    s.push_str(reason);
                }
                if !actor.is_empty() {
                    s.push_str(&format!(" [{actor}]"));
                }
                s
            }
            EventKind::Signal {
                document,
                entry,
                outcome,
                target,
                detail,
            } => {
                let what = match outcome.as_str() {
                    "delivered" => "delivered",
                    "dead" => "refused for good (dead letter; berthctl outbox retry|drop)",
                    _ => "not delivered; will retry",
                };
                let mut s = format!("signal {entry} of document {document} to {target}: {what}");
                if !detail.is_empty() {
                    s.push_str(": ");
                    s.push_str(detail);
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
            EventKind::ConfigChanged {
                service,
                old_hash,
                new_hash,
                files,
                more,
                reaction,
            } => {
                let short = |h: &Option<String>| match h {
                    Some(h) => {
                        let h = h.strip_prefix("sha256:").unwrap_or(h);
                        h[..h.len().min(12)].to_string()
                    }
                    None => "-".to_string(),
                };
                let mut s = format!(
                    "{service}: config changed ({} -> {})",
                    short(old_hash),
                    short(new_hash)
                );
                if !files.is_empty() {
                    s.push_str(": ");
                    s.push_str(&files.join(", "));
                    if *more > 0 {
                        s.push_str(&format!(" and {more} more"));
                    }
                }
                s.push_str("; ");
                s.push_str(reaction);
                s
            }
            EventKind::UnitState {
                service,
                unit,
                state,
                effect,
            } => {
                if effect.is_empty() {
                    format!("{service}: host unit {unit} is {state}")
                } else {
                    format!("{service}: host unit {unit} is {state}; {effect}")
                }
            }
            EventKind::ImagePull {
                service,
                reference,
                layers_done,
                layers_total,
                bytes_done,
                bytes_total,
                done,
                failed,
            } => {
                let progress = crate::pull_progress::PullProgress {
                    reference: reference.clone(),
                    layers_done: *layers_done,
                    layers_total: *layers_total,
                    bytes_done: *bytes_done,
                    bytes_total: *bytes_total,
                };
                let what = match (*done, *failed) {
                    (false, _) => format!("pulling {reference}"),
                    (true, false) => format!("pulled {reference}"),
                    (true, true) => format!("pull of {reference} failed"),
                };
                // Nothing to count before the engine named a layer.
                if progress.layers_total == 0 {
                    format!("{service}: {what}")
                } else {
                    format!("{service}: {what} \u{2014} {}", progress.describe())
                }
            }
            EventKind::Daemon { message } => message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind survives a round trip through the flattened JSON form
    /// (a field named like one of `Event`'s own would not).
    #[test]
    fn every_kind_round_trips_through_json() {
        let kinds = vec![
            EventKind::DeploymentStatus {
                service: "web".into(),
                deployment: "web-1".into(),
                action: DeployAction::Create,
                status: Status::Pending,
                reason: "r".into(),
                actor: "uid:0".into(),
            },
            EventKind::ContainerAction {
                service: "web".into(),
                action: "started".into(),
                container: "c".into(),
                reason: "r".into(),
            },
            EventKind::ContainerObserved {
                service: "web".into(),
                container: "c".into(),
                action: "die".into(),
                exit_code: Some(1),
            },
            EventKind::EngineState {
                reachable: true,
                detail: "d".into(),
            },
            EventKind::ServiceHeld {
                service: "web".into(),
                held: true,
            },
            EventKind::ServiceDeleted {
                service: "web".into(),
            },
            EventKind::RecordUnreadable {
                service: "web".into(),
                path: "p".into(),
                error: "e".into(),
            },
            EventKind::ConfigChanged {
                service: "web".into(),
                old_hash: Some("a".into()),
                new_hash: Some("b".into()),
                files: vec!["f".into()],
                more: 1,
                reaction: "restart".into(),
            },
            EventKind::Signal {
                document: "d-1".into(),
                entry: 3,
                outcome: "dead".into(),
                target: "POST http://h/s".into(),
                detail: "404".into(),
            },
            EventKind::ImagePull {
                service: "web".into(),
                reference: "127.0.0.1:5000/web:2".into(),
                layers_done: 3,
                layers_total: 7,
                bytes_done: 12_300_000,
                bytes_total: 80_100_000,
                done: true,
                failed: true,
            },
            EventKind::Daemon {
                message: "m".into(),
            },
        ];
        for kind in kinds {
            let e = Event {
                seq: 7,
                at_ms: 9,
                kind,
            };
            let text = serde_json::to_string(&e).expect("serializes");
            let back: Event =
                serde_json::from_str(&text).unwrap_or_else(|err| panic!("{text}: {err}"));
            assert_eq!(back, e);
        }
    }

    #[test]
    fn a_pull_reads_as_layers_and_bytes() {
        let mut kind = EventKind::ImagePull {
            service: "web".into(),
            reference: "127.0.0.1:5000/web:2".into(),
            layers_done: 3,
            layers_total: 7,
            bytes_done: 12_300_000,
            bytes_total: 80_100_000,
            done: false,
            failed: false,
        };
        assert_eq!(
            kind.summary(),
            "web: pulling 127.0.0.1:5000/web:2 \u{2014} 3/7 layers, 12.3 MB / 80.1 MB"
        );
        assert_eq!(kind.service(), Some("web"));
        if let EventKind::ImagePull {
            done, layers_done, ..
        } = &mut kind
        {
            *done = true;
            *layers_done = 7;
        }
        assert_eq!(
            kind.summary(),
            "web: pulled 127.0.0.1:5000/web:2 \u{2014} 7/7 layers, 12.3 MB / 80.1 MB"
        );
        if let EventKind::ImagePull {
            failed,
            layers_total,
            ..
        } = &mut kind
        {
            *failed = true;
            *layers_total = 0;
        }
        assert_eq!(kind.summary(), "web: pull of 127.0.0.1:5000/web:2 failed");
        // `failed` is left out when false: older readers see what they knew.
        let text = serde_json::to_string(&EventKind::ImagePull {
            service: "web".into(),
            reference: "r".into(),
            layers_done: 0,
            layers_total: 0,
            bytes_done: 0,
            bytes_total: 0,
            done: false,
            failed: false,
        })
        .expect("serializes");
        assert!(!text.contains("failed"), "{text}");
    }
}
