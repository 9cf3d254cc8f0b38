//! The CLI's one error type: a message for the operator, the lines that
//! detail it, an optional hint, and the exit code it maps to.

use std::fmt::Write as _;

/// How an error ends the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Exit 1: the operation failed (a FAILED deployment, a daemon error, an
    /// unreachable daemon).
    Failed,
    /// Exit 2: the input was wrong (invalid spec files, a 400/409/422 answer).
    Usage,
    /// Exit 3: a deployment waited for stops at a breakpoint hook (WAITING_HOOK
    /// until `berthctl hook clear`), and nothing failed.
    Breakpoint,
    /// stdout was closed under us (`berthctl events | head`): exit quietly.
    BrokenPipe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub kind: ErrorKind,
    pub message: String,
    /// One line per problem, printed under the message.
    pub details: Vec<String>,
    pub hint: Option<String>,
    /// The API's machine-readable error kind (`conflict`, `not_found`, ...),
    /// when the error is the daemon's answer.
    pub api_kind: Option<String>,
}

pub type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            kind: ErrorKind::Failed,
            message: message.into(),
            details: Vec::new(),
            hint: None,
            api_kind: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            kind: ErrorKind::Usage,
            ..CliError::failed(message)
        }
    }

    pub fn breakpoint(message: impl Into<String>) -> Self {
        CliError {
            kind: ErrorKind::Breakpoint,
            ..CliError::failed(message)
        }
    }

    pub fn with_details(mut self, details: Vec<String>) -> Self {
        self.details = details;
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A failed write to stdout.
    pub fn stdout(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CliError {
                kind: ErrorKind::BrokenPipe,
                ..CliError::failed("stdout closed")
            }
        } else {
            CliError::failed(format!("cannot write to stdout: {e}"))
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self.kind {
            ErrorKind::Failed => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Breakpoint => 3,
            ErrorKind::BrokenPipe => 0,
        }
    }

    /// What goes to stderr (empty for a broken pipe).
    pub fn render(&self) -> String {
        if self.kind == ErrorKind::BrokenPipe {
            return String::new();
        }
        let mut s = format!("error: {}\n", self.message);
        for d in &self.details {
            let _ = writeln!(s, "  {d}");
        }
        if let Some(h) = &self.hint {
            let _ = writeln!(s, "hint: {h}");
        }
        s
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_details_and_hint() {
        let e = CliError::usage("2 services are invalid")
            .with_details(vec!["a: bad".into(), "b: worse".into()])
            .with_hint("fix them");
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.render(),
            "error: 2 services are invalid\n  a: bad\n  b: worse\nhint: fix them\n"
        );
    }

    #[test]
    fn broken_pipe_is_quiet() {
        let e = CliError::stdout(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(e.exit_code(), 0);
        assert_eq!(e.render(), "");
    }
}
