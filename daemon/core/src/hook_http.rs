//! http hooks (`{http: URL}` in `hooks:`): the seam berthd's HTTP client
//! implements, and the pure decisions about its answers. The retrying runs
//! in the agent's hook job; nothing here waits or sends.
//!
//! The rules:
//! - The deployment (secrets redacted) is POSTed as JSON. A 2xx answer
//!   proceeds; 409 or 423 means "not yet": asked again after a backoff
//!   (1 s, doubling, at most 30 s) until the hook's timeout (its retries
//!   included), then the timeout is what `on_timeout` says. Any other
//!   status aborts at once, naming it and the start of the answer's body.
//! - An attempt that could not reach the endpoint (connection refused, DNS,
//!   TLS, a broken answer) is retried the same way: an endpoint that
//!   restarts must not fail an update. But a hook that never got an HTTP
//!   answer before its timeout did not decide anything: its end is an
//!   error naming the last failure, which aborts even with
//!   `on_timeout: proceed` (an endpoint that answered "not yet" at least
//!   once, or was too slow to answer, simply timed out).
//! - A URL that can never work (not http(s), no client) aborts at once.
//! - Nothing shown (errors, outputs) holds the URL's query, fragment or
//!   user info: the URL is shown through [`crate::heat::redact_url`], and
//!   any text echoed back is [`scrub`]bed of them.

use std::future::Future;
use std::time::Duration;

/// One POST of an http hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRequest {
    /// The URL as the spec says it (secrets included: it is sent, never shown).
    pub url: String,
    /// Extra headers (`Content-Type` is always `application/json`).
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
    /// The answer (its body included) must arrive within this.
    pub timeout: Duration,
}

/// The endpoint's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookResponse {
    pub status: u16,
    /// The start of the body (at most [`BODY_CAP`] bytes), lossily UTF-8.
    pub body: String,
}

/// The most of an answer's body an implementation keeps.
pub const BODY_CAP: usize = 64 << 10;

/// Why a POST got no answer. The texts name no URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookHttpError {
    /// Could not connect, send or read the answer: tried again.
    #[error("{0}")]
    Unreachable(String),
    /// Connected (or trying), but no complete answer within the attempt's time.
    #[error("no answer within {}", crate::units::format_duration(*.0))]
    NoAnswer(Duration),
    /// Can never work (a bad URL, no client, refused by node policy): not
    /// tried again.
    #[error("{0}")]
    Invalid(String),
}

impl HookHttpError {
    /// Worth another attempt.
    pub fn is_retried(&self) -> bool {
        !matches!(self, HookHttpError::Invalid(_))
    }
}

/// The HTTP client http hooks are POSTed with.
pub trait HookHttp: Send + Sync + 'static {
    fn post(
        &self,
        req: HookRequest,
    ) -> impl Future<Output = Result<HookResponse, HookHttpError>> + Send;
}

/// No client: every http hook fails at once, saying so (for environments
/// that run no http hooks).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHookHttp;

impl HookHttp for NoHookHttp {
    async fn post(&self, _req: HookRequest) -> Result<HookResponse, HookHttpError> {
        Err(HookHttpError::Invalid(
            "no http client in this agent (berthd wires one)".into(),
        ))
    }
}

/// What an answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 2xx.
    Proceed,
    /// 409 or 423: ask again later.
    NotYet,
    /// Anything else.
    Abort,
}

/// What `status` means for an http hook.
pub fn classify(status: u16) -> Answer {
    match status {
        200..=299 => Answer::Proceed,
        409 | 423 => Answer::NotYet,
        _ => Answer::Abort,
    }
}

/// The first wait between attempts.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The wait after failed attempt `attempt` (from 1): 1 s, 2 s, 4 s, ...,
/// at most 30 s.
pub fn backoff(attempt: u32) -> Duration {
    let shift = attempt.saturating_sub(1).min(16);
    BACKOFF_FIRST.saturating_mul(1 << shift).min(BACKOFF_MAX)
}

/// `text` without the secret parts of `url`: its query, its fragment and
/// the user info before its host are each replaced by `<redacted>`
/// wherever they appear (an endpoint may echo its URL back, an error may
/// quote it).
pub fn scrub(text: &str, url: &str) -> String {
    let mut secrets: Vec<&str> = Vec::new();
    let (head, rest) = match url.find(['?', '#']) {
        Some(i) => (&url[..i], &url[i + 1..]),
        None => (url, ""),
    };
    for part in rest.split(['?', '#']).filter(|p| !p.is_empty()) {
        secrets.push(part);
        // Each parameter's value alone too (an echo may quote just one).
        for pair in part.split('&') {
            if let Some((_, value)) = pair.split_once('=') {
                secrets.push(value);
            }
        }
    }
    if let Some(s) = head.find("://") {
        let after = &head[s + 3..];
        let host_end = after.find('/').unwrap_or(after.len());
        if let Some(at) = after[..host_end].rfind('@') {
            let info = &after[..at];
            secrets.push(info);
            // The password alone too (`user:pass`).
            if let Some((_, pass)) = info.split_once(':') {
                secrets.push(pass);
            }
        }
    }
    // Longest first, so a part inside another is not left half replaced;
    // very short parts (`?a`) would blank out ordinary words, and are no
    // secret anyway.
    secrets.retain(|s| s.len() >= 4);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in secrets {
        out = out.replace(s, crate::REDACTED);
    }
    out
}

/// The start of an answer's body for a message: trimmed, at most `max`
/// bytes on a char boundary, scrubbed of `url`'s secrets.
pub fn body_excerpt(body: &str, max: usize, url: &str) -> String {
    let body = body.trim();
    let mut cut = body.len().min(max);
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut s = scrub(&body[..cut], url);
    if cut < body.len() {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        for s in [200, 201, 204, 299] {
            assert_eq!(classify(s), Answer::Proceed, "{s}");
        }
        for s in [409, 423] {
            assert_eq!(classify(s), Answer::NotYet, "{s}");
        }
        for s in [100, 301, 304, 400, 404, 408, 429, 500, 503] {
            assert_eq!(classify(s), Answer::Abort, "{s}");
        }
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let got: Vec<u64> = (1..=8).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(0), BACKOFF_FIRST);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn scrub_removes_query_fragment_and_user_info() {
        let url = "https://bob:s3cret@ci.example/hook?token=abcdef&x=1#frag1";
        let text = format!("echo {url} and token=abcdef&x=1 and s3cret and frag1, abcdef alone");
        let s = scrub(&text, url);
        for secret in ["abcdef", "s3cret", "frag1", "bob:"] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        assert!(s.contains("ci.example/hook"), "{s}");
        // Nothing to hide: unchanged.
        assert_eq!(scrub("busy", "http://h/x"), "busy");
        // Tiny parts are no secret and do not blank out words.
        assert_eq!(scrub("a bad day", "http://h/x?a"), "a bad day");
    }

    #[test]
    fn excerpts_are_cut_on_a_char_boundary() {
        assert_eq!(body_excerpt("  busy\n", 100, "http://h/"), "busy");
        assert_eq!(body_excerpt("ééé", 3, "http://h/"), "é...");
        assert_eq!(
            body_excerpt(
                "see /hook?key=topsecret",
                100,
                "http://h/hook?key=topsecret"
            ),
            "see /hook?<redacted>"
        );
    }

    #[test]
    fn only_invalid_is_final() {
        assert!(HookHttpError::Unreachable("refused".into()).is_retried());
        assert!(HookHttpError::NoAnswer(Duration::from_secs(3)).is_retried());
        assert!(!HookHttpError::Invalid("bad url".into()).is_retried());
        assert_eq!(
            HookHttpError::NoAnswer(Duration::from_secs(90)).to_string(),
            "no answer within 90s"
        );
    }
}
