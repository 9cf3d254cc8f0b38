//! Containers known to be this node's, so a mutating call on one need not
//! inspect it first.
//!
//! Every mutating call must refuse a container without this node's label.
//! For a name that takes an inspect each time (a name can be re-pointed),
//! but a full container id is never reused and a container's labels never
//! change: once berth has created an id with its label, or has seen the id
//! carry it, the answer stays the same for that container's life. A cold
//! apply of 50 services thus starts 50 containers without 50 inspects.
//!
//! Entries are the ids berth created since the last list plus those the last
//! list returned, so the set never outgrows the node.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct OwnedIds {
    /// Full id → the container's own stop timeout (seconds), as created.
    ids: HashMap<String, Option<i64>>,
}

/// A full container id: 64 lowercase hex digits (what create and list return).
pub fn is_full_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl OwnedIds {
    /// `id` carries this node's label (berth created it, or an inspect said so).
    pub fn insert(&mut self, id: &str, stop_timeout: Option<i64>) {
        if is_full_id(id) {
            self.ids.insert(id.to_string(), stop_timeout);
        }
    }

    /// The stop timeout of a known container, `None` if it is not known.
    pub fn get(&self, id: &str) -> Option<Option<i64>> {
        self.ids.get(id).copied()
    }

    pub fn remove(&mut self, id: &str) {
        self.ids.remove(id);
    }

    /// After a list: keeps only the ids it returned (the rest were removed).
    pub fn retain_listed(&mut self, listed: &[String]) {
        let listed: std::collections::HashSet<&str> = listed.iter().map(String::as_str).collect();
        self.ids.retain(|id, _| listed.contains(id.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

    #[test]
    fn only_full_ids_are_kept_and_a_list_prunes_the_rest() {
        let mut o = OwnedIds::default();
        o.insert("berth-web", Some(3));
        o.insert("0123456789ab", None);
        assert_eq!(o.get("berth-web"), None, "a name is inspected every time");
        assert_eq!(o.get("0123456789ab"), None, "a short id could be ambiguous");
        o.insert(A, Some(3));
        o.insert(B, None);
        assert_eq!(o.get(A), Some(Some(3)));
        o.retain_listed(&[B.to_string()]);
        assert_eq!(o.get(A), None, "not listed any more: removed");
        assert_eq!(o.get(B), Some(None));
        o.remove(B);
        assert_eq!(o.get(B), None);
        assert!(!is_full_id(&A.to_uppercase()));
    }
}
