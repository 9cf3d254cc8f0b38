//! The TCP API's tokens file (`berth_api::Tokens::parse`) and the
//! `Authorization` header check.
//!
//! Beyond "no panic": an accepted file lets in exactly its tokens, each
//! with the role its line gives and a name that does not show the token;
//! an error names `file:line` of a line that exists; a header that is not
//! `Bearer <a listed token>` is refused.
#![no_main]

use berth_api::{Role, Tokens};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The text's last line doubles as a header to check against the file.
    let header = text.lines().last().unwrap_or_default();
    let tokens = match Tokens::parse(text, "tokens") {
        Ok(t) => t,
        Err(e) => {
            assert!(!e.message.is_empty());
            if e.at != "tokens" {
                let line: usize =
                    e.at.strip_prefix("tokens:")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| panic!("error at {:?}", e.at));
                assert!((1..=text.lines().count()).contains(&line), "{e}");
            }
            return;
        }
    };
    assert!(!tokens.is_empty());
    let mut listed = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(role), Some(token)) = (fields.next(), fields.next()) else {
            panic!("accepted a line without two fields: {line:?}");
        };
        let role = match role {
            "read" => Role::Read,
            "admin" => Role::Admin,
            other => panic!("accepted role {other:?}"),
        };
        let who = tokens
            .authenticate(format!("Bearer {token}").as_bytes())
            .unwrap_or_else(|| panic!("listed token {token:?} is refused"));
        assert_eq!(who.role, role, "token {token:?}");
        assert!(who.name.starts_with(&format!("token:{}:", role.as_str())));
        assert!(!who.name.contains(token), "the name shows the token");
        listed.push(token);
    }
    assert_eq!(listed.len(), tokens.len());
    if let Some(who) = tokens.authenticate(header.as_bytes()) {
        let presented = header.trim().get(7..).map(str::trim).unwrap_or_default();
        assert!(
            listed.contains(&presented),
            "header {header:?} let in as {who:?}"
        );
    }
});
