//! Sorting bollard's errors into what berth cares about.

use bollard::errors::Error as BollardError;

/// A failed engine call, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The engine could not be reached, or stopped answering (connect
    /// refused, no socket, timeout, connection dropped mid-response).
    Unreachable(String),
    /// The engine answered with an error status.
    Status { code: u16, message: String },
    /// An error inside a successful response's stream (`errorDetail`).
    Stream(String),
    /// Anything else (a response we could not decode, a bad request URI).
    Other(String),
}

impl Failure {
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Failure::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A 404 about the container itself; a 404 on start can also be about
    /// something it refers to (a network that does not exist).
    pub(crate) fn is_no_such_container(&self) -> bool {
        self.status() == Some(404)
            && self
                .message()
                .to_ascii_lowercase()
                .contains("no such container")
    }

    pub(crate) fn message(&self) -> &str {
        match self {
            Failure::Unreachable(m) | Failure::Stream(m) | Failure::Other(m) => m,
            Failure::Status { message, .. } => message,
        }
    }
}

impl From<BollardError> for Failure {
    fn from(e: BollardError) -> Self {
        match e {
            // A proxy in front of the engine (a socket proxy, or the tests'
            // own) could not reach it: the engine did not refuse anything.
            BollardError::DockerResponseServerError {
                status_code: code @ 502..=504,
                message,
            } => Failure::Unreachable(format!(
                "the engine's endpoint answered {code}: {}",
                message.trim()
            )),
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => Failure::Status {
                code: status_code,
                message: message.trim().to_string(),
            },
            BollardError::DockerStreamError { error } => Failure::Stream(error.trim().to_string()),
            BollardError::RequestTimeoutError => {
                Failure::Unreachable("the engine did not answer in time".to_string())
            }
            e @ (BollardError::HyperResponseError { .. }
            | BollardError::HyperLegacyError { .. }
            | BollardError::IOError { .. }
            | BollardError::SocketNotFoundError(_)) => Failure::Unreachable(chain(&e)),
            e => Failure::Other(chain(&e)),
        }
    }
}

pub(crate) use berth_core::error_chain as chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_error_is_an_unreachable_engine_not_a_refusal() {
        for code in [502, 503, 504] {
            let f = Failure::from(BollardError::DockerResponseServerError {
                status_code: code,
                message: "proxy: forwarding to the engine: connection reset\n".to_string(),
            });
            assert!(
                matches!(&f, Failure::Unreachable(m) if m.ends_with("connection reset")),
                "{code}: {f:?}"
            );
        }
        let f = Failure::from(BollardError::DockerResponseServerError {
            status_code: 500,
            message: "driver failed programming external connectivity".to_string(),
        });
        assert_eq!(f.status(), Some(500), "the engine's own failure stays one");
    }

    #[test]
    fn sorts_errors() {
        let f = Failure::from(BollardError::DockerResponseServerError {
            status_code: 404,
            message: "No such image: x\n".to_string(),
        });
        assert_eq!(f.status(), Some(404));
        assert_eq!(f.message(), "No such image: x");
        assert!(!f.is_no_such_container());
        let f = Failure::from(BollardError::DockerResponseServerError {
            status_code: 404,
            message: "No such container: abc".to_string(),
        });
        assert!(f.is_no_such_container());
        assert!(matches!(
            Failure::from(BollardError::RequestTimeoutError),
            Failure::Unreachable(_)
        ));
        assert!(matches!(
            Failure::from(BollardError::SocketNotFoundError("/nope".to_string())),
            Failure::Unreachable(m) if m.contains("/nope")
        ));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(matches!(
            Failure::from(BollardError::from(io)),
            Failure::Unreachable(m) if m.contains("refused")
        ));
        assert!(matches!(
            Failure::from(BollardError::DockerStreamError {
                error: "boom".to_string()
            }),
            Failure::Stream(m) if m == "boom"
        ));
    }
}
