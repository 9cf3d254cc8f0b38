//! The one error of the upstream side (Heat documents and the signal
//! outbox), as `berth-upstream` returns it and the API answers it.
//!
//! Why here: `berth-api` must not depend on `berth-upstream` (nor on
//! `berth-store`, whose `OutboxError` the outbox operations fail with), and
//! the two do not know each other (berthd wires one into the other through
//! `berth_api::UpstreamApi`). Putting the type in the API crate would make
//! `berth-upstream` depend on the router; so it lives below both, in core,
//! and each names it as `UpstreamError<AgentError>`. Core sits below the
//! agent too, so the agent's error is the type parameter `A`, and the
//! store's failures arrive as text (the upstream crate words them, naming
//! the file).

use crate::policy::PolicyViolation;

/// Why a Heat document or an outbox operation was refused or failed. `A`
/// is the agent's error (`berth_agent::AgentError`). The statuses the API
/// answers are in brackets.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError<A> {
    /// A malformed document [400]: `path` names the field
    /// (`config[0].image`), `message` says what is wrong with it (naming
    /// the path too), `details` has one line per problem.
    #[error("{message}")]
    Invalid {
        path: String,
        message: String,
        details: Vec<String>,
    },
    /// Another agent's document (script, puppet, ...) [422].
    #[error("group {group:?} is not berth's; berth acts on group \"berth\" documents only")]
    NotOurs { group: String },
    /// The same id was submitted with another body [409].
    #[error(
        "document {doc_id} was already submitted with another body; Heat gives every change a new id"
    )]
    Conflict { doc_id: String },
    /// `[policy]` forbids what a spec asks for [403].
    #[error("refused by the node policy: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Policy(Vec<PolicyViolation>),
    /// The agent refused or failed [as the API maps the agent's errors].
    #[error(transparent)]
    Agent(#[from] A),
    /// No such outbox entry [404].
    #[error("{0}")]
    NotFound(String),
    /// The outbox entry is not in a state the operation applies to [409].
    #[error("{0}")]
    WrongState(String),
    /// The document index or the outbox could not be read or written
    /// [500]; the text names what and the file.
    #[error("{0}")]
    Store(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("agent: {0}")]
    struct Agent(&'static str);

    #[test]
    fn an_agent_error_converts_and_reads_as_itself() {
        let e: UpstreamError<Agent> = Agent("no service named web").into();
        assert!(matches!(e, UpstreamError::Agent(Agent(_))));
        assert_eq!(e.to_string(), "agent: no service named web");
    }

    #[test]
    fn a_policy_refusal_names_every_violation() {
        let v = |rule: &'static str| PolicyViolation {
            rule,
            field: "config[0].privileged".into(),
            message: "not allowed".into(),
        };
        let e: UpstreamError<Agent> =
            UpstreamError::Policy(vec![v("allow_privileged"), v("allow_host_network")]);
        let text = e.to_string();
        assert!(text.starts_with("refused by the node policy: "), "{text}");
        assert!(
            text.contains("allow_privileged") && text.contains("allow_host_network"),
            "{text}"
        );
    }
}
