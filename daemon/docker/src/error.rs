//! Sorting bollard's errors into what berth cares about.

use berth_core::runtime::PullCause;
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

/// Sorts a failed pull by the engine's status and words (the engine passes
/// the registry's failure on as text: a 404 or a 500 with its message).
pub(crate) fn pull_cause(status: Option<u16>, message: &str) -> PullCause {
    let m = message.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if has(&["no space left on device"]) {
        PullCause::DiskFull
    } else if has(&["server gave http response to https client"]) {
        PullCause::PlainHttp
    } else if has(&[
        "x509:",
        "tls:",
        "certificate",
        "first record does not look like a tls handshake",
    ]) {
        PullCause::Tls
    } else if has(&["repository does not exist"]) {
        // Docker Hub's answer for a name it does not have ("pull access
        // denied ..., repository does not exist or may require 'docker login'").
        PullCause::NotFound
    } else if has(&[
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "denied",
        "forbidden",
    ]) {
        PullCause::Unauthorized
    } else if status == Some(404) || has(&["manifest unknown", "not found", "name unknown"]) {
        PullCause::NotFound
    } else if has(&[
        "connection refused",
        "no such host",
        "dial tcp",
        "i/o timeout",
        "no route to host",
        "network is unreachable",
        "connection reset",
        "timeout exceeded",
        "deadline exceeded",
        "eof",
    ]) {
        PullCause::Unreachable
    } else if has(&[
        "500 internal server error",
        "502 bad gateway",
        "503 service unavailable",
        "504 gateway timeout",
        "unexpected http status: 5",
        "http 500 response",
        "http 502 response",
        "http 503 response",
        "http 504 response",
    ]) {
        // The engine reports every failed pull as its own 500, so a
        // registry's 5xx is recognised by the words it passes on.
        PullCause::ServerError
    } else {
        PullCause::Other
    }
}

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

    /// The engine's words for each failure (Docker 20.10 to 27), as it
    /// answers `POST /images/create`.
    #[test]
    fn sorts_pull_failures() {
        let cases = [
            (
                Some(404),
                "manifest for 127.0.0.1:5000/x:nope not found: manifest unknown: manifest unknown",
                PullCause::NotFound,
            ),
            (
                Some(404),
                "pull access denied for nope, repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
                PullCause::NotFound,
            ),
            (
                Some(500),
                "Head \"http://127.0.0.1:5000/v2/x/manifests/1\": no basic auth credentials",
                PullCause::Unauthorized,
            ),
            (
                Some(500),
                "Head \"http://127.0.0.1:5000/v2/x/manifests/1\": denied: requested access to the resource is denied",
                PullCause::Unauthorized,
            ),
            (
                Some(500),
                "unauthorized: authentication required",
                PullCause::Unauthorized,
            ),
            (
                Some(500),
                "Get \"https://uc:8787/v2/\": http: server gave HTTP response to HTTPS client",
                PullCause::PlainHttp,
            ),
            (
                Some(500),
                "Get \"https://reg.example:5000/v2/\": x509: certificate signed by unknown authority",
                PullCause::Tls,
            ),
            (
                Some(500),
                "Get \"http://127.0.0.1:5798/v2/\": dial tcp 127.0.0.1:5798: connect: connection refused",
                PullCause::Unreachable,
            ),
            (
                Some(500),
                "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io on 10.0.0.53:53: no such host",
                PullCause::Unreachable,
            ),
            (
                Some(500),
                "Get \"https://10.1.1.1/v2/\": net/http: request canceled while waiting for connection (Client.Timeout exceeded while awaiting headers)",
                PullCause::Unreachable,
            ),
            (
                None,
                "write /var/lib/docker/tmp/GetImageBlob1: no space left on device",
                PullCause::DiskFull,
            ),
            (
                Some(500),
                "Get \"http://127.0.0.1:40301/v2/\": dial tcp 127.0.0.1:40301: connect: connection refused",
                PullCause::Unreachable,
            ),
            (
                Some(500),
                "received unexpected HTTP status: 503 Service Unavailable",
                PullCause::ServerError,
            ),
            (
                Some(500),
                "error parsing HTTP 502 response body: invalid character '<' looking for beginning of value: \"<html>502 Bad Gateway</html>\"",
                PullCause::ServerError,
            ),
            (Some(500), "something else entirely", PullCause::Other),
        ];
        for (status, message, cause) in cases {
            assert_eq!(pull_cause(status, message), cause, "{message}");
        }
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
