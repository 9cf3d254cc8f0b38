//! SIGHUP: a re-read config applied to the running berthd where it can be
//! without a restart. `spec_dir`, `[policy]`, `[upstream]`, `[images]
//! auth_file` and the files `[api]` names (tokens, TLS certificate, key and
//! client CA, read again even when their paths are the same: rotation)
//! take effect at once (the auth file is checked again too, and read at
//! each pull); the
//! keys that shape the node itself (node_id, state_dir, prefix, the
//! listeners, ...) wait for a restart and are named. A part that fails to
//! load keeps running as it was, and says so.

use std::sync::Arc;

use berth_api::{TcpAccess, TlsAcceptor};
use berth_core::policy::NodePolicy;
use tokio::sync::watch;

use crate::config::Config;
use crate::tcp;

/// The parts of a running berthd that SIGHUP can change.
pub struct Live {
    /// The engine: pulls read `[images] auth_file`.
    pub runtime: berth_docker::DockerRuntime,
    /// `None` when berthd started without `[api] listen`.
    pub tcp: Option<TcpLive>,
    pub upstream: berth_upstream::Upstream,
    /// `[policy]` for the local socket's group members and the agent's
    /// check before each create.
    pub node_policy: watch::Sender<Arc<NodePolicy>>,
}

pub struct TcpLive {
    pub access: watch::Sender<TcpAccess>,
    pub tls: watch::Sender<Option<TlsAcceptor>>,
}

/// What one reload did.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// What now runs with new values (no secrets, no URLs).
    pub applied: Vec<String>,
    /// Keys that changed but wait for a restart.
    pub restart: Vec<&'static str>,
    /// Parts that could not be loaded and keep their running values.
    pub failed: Vec<String>,
}

impl Outcome {
    /// One line for the log and the `daemon` event.
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        if self.applied.is_empty() {
            parts.push("nothing changed that SIGHUP applies".to_string());
        } else {
            parts.push(format!("applied {}", self.applied.join("; ")));
        }
        if !self.failed.is_empty() {
            parts.push(format!(
                "kept running as before: {}",
                self.failed.join("; ")
            ));
        }
        if !self.restart.is_empty() {
            parts.push(format!(
                "changed but taking effect only when berthd restarts: {}",
                self.restart.join(", ")
            ));
        }
        format!("config reloaded: {}", parts.join("; "))
    }
}

/// The TCP API's access as `prepare` read it from `cfg`.
pub fn tcp_access(setup_tokens: berth_api::Tokens, cfg: &Config) -> TcpAccess {
    TcpAccess {
        tokens: Arc::new(setup_tokens),
        node_policy: Arc::new(cfg.node_policy()),
    }
}

/// Applies `new` to `live` where SIGHUP can, and makes `running` what now
/// runs.
pub fn apply(running: &mut Config, new: &Config, live: &Live, own_uid: u32) -> Outcome {
    let mut out = Outcome {
        restart: running.restart_only_changes(new),
        ..Outcome::default()
    };
    let mut target = running.with_reloaded(new);
    if target.spec_dir != running.spec_dir {
        out.applied.push("spec_dir".into());
    }
    // Checked again even when the path is the same: the file may have
    // gained a credential helper. A bad one keeps the running path (whose
    // file the next pull reads, and names if it is bad too).
    match crate::images::check_auth_file(&target) {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
            if target.images.auth_file != running.images.auth_file {
                live.runtime.set_auth_file(target.images.auth_file.clone());
                out.applied.push("[images] auth_file".into());
            }
        }
        Err(e) => {
            out.failed
                .push(format!("{e}; pulls keep the running [images] auth_file"));
            target.images.auth_file = running.images.auth_file.clone();
        }
    }
    if let Some(tcp_live) = &live.tcp {
        match tcp::prepare(&target.api, own_uid) {
            Ok(Some(setup)) => {
                let n = setup.tokens.len();
                let tls = match (&setup.tls, setup.client_auth) {
                    (None, _) => "plain HTTP",
                    (Some(_), false) => "TLS",
                    (Some(_), true) => "TLS with client certificates",
                };
                tcp_live
                    .access
                    .send_replace(tcp_access(setup.tokens, &target));
                tcp_live.tls.send_replace(setup.tls.map(TlsAcceptor::from));
                out.applied
                    .push(format!("[api] {n} token(s), {tls} for new connections"));
            }
            // The listener is the running one, so `listen` is set.
            Ok(None) => {}
            Err(e) => {
                out.failed.push(format!(
                    "{e}; the TCP API keeps its tokens and TLS (the node policy still applies)"
                ));
                target.api = running.api.clone();
                let policy = Arc::new(target.node_policy());
                tcp_live
                    .access
                    .send_modify(|a| a.node_policy = policy.clone());
            }
        }
    }
    live.node_policy
        .send_if_modified(|p| replace_if_changed(p, target.node_policy()));
    match live.upstream.reconfigure(crate::upstream_config(&target)) {
        Ok(keys) => {
            let (policy, upstream): (Vec<&str>, Vec<&str>) =
                keys.into_iter().partition(|k| *k == "policy");
            if !policy.is_empty() {
                out.applied.push("[policy]".into());
            }
            if !upstream.is_empty() {
                out.applied
                    .push(format!("[upstream] {}", upstream.join(", ")));
            }
        }
        Err(e) => {
            out.failed.push(format!(
                "[upstream] {e}; polling and signals keep their settings"
            ));
            target.upstream = running.upstream.clone();
            target.poll_interval = running.poll_interval;
            target.heartbeat = running.heartbeat;
        }
    }
    *running = target;
    out
}

/// Replaces `current` when `new` differs; whether it did.
fn replace_if_changed(current: &mut Arc<NodePolicy>, new: NodePolicy) -> bool {
    if **current == new {
        return false;
    }
    *current = Arc::new(new);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_policy_reaches_the_socket_and_the_agent_an_unchanged_one_wakes_nobody() {
        let (tx, mut rx) = watch::channel(Arc::new(NodePolicy::default()));
        rx.mark_unchanged();
        assert!(!tx.send_if_modified(|p| replace_if_changed(p, NodePolicy::default())));
        assert!(!rx.has_changed().expect("sender alive"));
        let wider = NodePolicy {
            allowed_capabilities: vec!["NET_ADMIN".into()],
            ..NodePolicy::default()
        };
        assert!(tx.send_if_modified(|p| replace_if_changed(p, wider.clone())));
        assert!(rx.has_changed().expect("sender alive"));
        assert_eq!(**rx.borrow_and_update(), wider);
    }
}
