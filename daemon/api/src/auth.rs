//! Bearer tokens for the TCP API. The tokens file has one token per line,
//! `read TOKEN` or `admin TOKEN`; `#` starts a comment. Tokens are kept as
//! sha256 digests and compared in constant time; a token's name (what
//! records and events show as the actor) is its role and a digest prefix,
//! never the token itself.

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// GET routes (status, records, logs, events, metrics).
    Read,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    role: Role,
    digest: [u8; 32],
    name: String,
}

/// The accepted tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    tokens: Vec<Token>,
}

/// A bad tokens file, with `file:line` where it applies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct TokensError {
    pub at: String,
    pub message: String,
}

/// Shortest token accepted: guessing must stay out of reach.
pub const MIN_TOKEN_LEN: usize = 16;

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub role: Role,
    /// `token:<role>:<first 8 hex digits of the token's sha256>`.
    pub name: String,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Tokens {
    /// Parses a tokens file's text; `origin` (the file's path) names errors.
    pub fn parse(text: &str, origin: &str) -> Result<Tokens, TokensError> {
        let mut tokens: Vec<Token> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let at = format!("{origin}:{}", i + 1);
            let bad = |message: String| TokensError {
                at: at.clone(),
                message,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(role), Some(token), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(bad(
                    "expected `read TOKEN` or `admin TOKEN` (two fields)".into()
                ));
            };
            let role = match role {
                "read" => Role::Read,
                "admin" => Role::Admin,
                other => {
                    return Err(bad(format!(
                        "unknown role `{other}`: expected `read` or `admin`"
                    )));
                }
            };
            if token.len() < MIN_TOKEN_LEN {
                return Err(bad(format!(
                    "the token is too short ({} characters, at least {MIN_TOKEN_LEN})",
                    token.len()
                )));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad(
                    "the token must be printable ASCII without spaces".into()
                ));
            }
            let d = digest(token.as_bytes());
            if tokens.iter().any(|t| t.digest == d) {
                return Err(bad("the same token is listed twice".into()));
            }
            let hex: String = d[..4].iter().map(|b| format!("{b:02x}")).collect();
            tokens.push(Token {
                role,
                digest: d,
                name: format!("token:{}:{hex}", role.as_str()),
            });
        }
        if tokens.is_empty() {
            return Err(TokensError {
                at: origin.to_string(),
                message: "no tokens (lines `read TOKEN` or `admin TOKEN`)".into(),
            });
        }
        Ok(Tokens { tokens })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Checks an `Authorization` header value (`Bearer TOKEN`). Every token
    /// is compared, in constant time, whichever matches.
    pub fn authenticate(&self, authorization: &[u8]) -> Option<Authenticated> {
        let presented = bearer(authorization)?;
        let d = digest(presented);
        let mut found = subtle::Choice::from(0);
        let mut index: u32 = 0;
        for (i, t) in self.tokens.iter().enumerate() {
            let eq = t.digest.ct_eq(&d);
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            index = u32::conditional_select(&index, &i, eq);
            found |= eq;
        }
        if !bool::from(found) {
            return None;
        }
        let t = self.tokens.get(usize::try_from(index).ok()?)?;
        Some(Authenticated {
            role: t.role,
            name: t.name.clone(),
        })
    }
}

/// The token of `Bearer TOKEN` (scheme case-insensitive, RFC 7235).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.strip_prefix(b" ")?.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "admin-token-0123456789";
    const R: &str = "read-token-0123456789";

    #[test]
    fn parses_roles_comments_and_blank_lines() {
        let t = Tokens::parse(
            &format!("# orchestrators\n\nadmin {A}\n  read   {R}  # not a comment: error?\n"),
            "t",
        );
        // A trailing comment is a third field: refused, not silently taken.
        assert_eq!(t.expect_err("3 fields").at, "t:4");
        let t = Tokens::parse(&format!("# c\n\nadmin {A}\n  read   {R}\n"), "t").expect("ok");
        assert_eq!(t.len(), 2);
        let a = t
            .authenticate(format!("Bearer {A}").as_bytes())
            .expect("admin");
        assert_eq!(a.role, Role::Admin);
        assert!(a.name.starts_with("token:admin:") && a.name.len() == 20);
        assert!(!a.name.contains(A));
        let r = t
            .authenticate(format!("bearer   {R} ").as_bytes())
            .expect("read");
        assert_eq!(r.role, Role::Read);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        for (text, line, what) in [
            ("admin\n", 1, "two fields"),
            ("# x\nwrite abcdefghijklmnopq\n", 2, "unknown role"),
            ("read short\n", 1, "too short"),
            (&format!("read {A}\nadmin {A}\n"), 2, "twice"),
            ("read abcdefghijklmnop\u{e9}\n", 1, "printable"),
        ] {
            let e = Tokens::parse(text, "/etc/berth/tokens").expect_err(what);
            assert_eq!(e.at, format!("/etc/berth/tokens:{line}"), "{what}");
            assert!(e.message.contains(what), "{what}: {e}");
        }
        let e = Tokens::parse("# only comments\n", "f").expect_err("empty");
        assert!(e.to_string().contains("no tokens"), "{e}");
    }

    #[test]
    fn wrong_or_malformed_headers_are_refused() {
        let t = Tokens::parse(&format!("admin {A}\n"), "t").expect("ok");
        for h in [
            "".to_string(),
            A.to_string(),
            format!("Basic {A}"),
            format!("Bearer {A}x"),
            format!("Bearer{A}"),
            "Bearer ".to_string(),
            "Bearer".to_string(),
            format!("Bearer {}", &A[..A.len() - 1]),
        ] {
            assert!(t.authenticate(h.as_bytes()).is_none(), "{h:?}");
        }
        assert!(t.authenticate(&[0xff, 0xfe, 0x00]).is_none());
    }
}
