//! What the pull and the report tasks share: following one URL of the
//! settings (`metadata_url`, `report_url`) across SIGHUP's changes.

use std::sync::Arc;

use berth_core::heat::redact_url;
use tokio::sync::watch;

use crate::{Settings, UpstreamConfig};

/// One task's view of the settings, for the URL it serves.
pub(crate) struct FollowUrl {
    changes: watch::Receiver<Arc<Settings>>,
    url_of: fn(&UpstreamConfig) -> Option<&String>,
    /// The URL the task serves now.
    active: Option<String>,
    /// Logged once when the URL served is unset.
    unset: &'static str,
}

/// The settings of one round and their URL.
pub(crate) struct Round {
    pub settings: Arc<Settings>,
    pub url: String,
    /// The URL without its secrets, for the log.
    pub shown: String,
    /// Another URL than the last round's (or the first): the task starts
    /// afresh with it.
    pub fresh: bool,
}

impl FollowUrl {
    /// Follows `changes` (subscribed from `Inner::settings`) for the URL
    /// `url_of` picks.
    pub(crate) fn new(
        changes: watch::Receiver<Arc<Settings>>,
        url_of: fn(&UpstreamConfig) -> Option<&String>,
        unset: &'static str,
    ) -> FollowUrl {
        FollowUrl {
            changes,
            url_of,
            active: None,
            unset,
        }
    }

    /// The settings as they are, once they give a URL: while they give
    /// none, waits for new settings (logging `unset` once when the URL
    /// served goes away). `None` when the settings can change no more.
    pub(crate) async fn next(&mut self) -> Option<Round> {
        loop {
            let settings = self.changes.borrow_and_update().clone();
            if let Some(url) = (self.url_of)(&settings.cfg).cloned() {
                let fresh = self.active.as_deref() != Some(url.as_str());
                self.active = Some(url.clone());
                return Some(Round {
                    shown: redact_url(&url),
                    settings,
                    url,
                    fresh,
                });
            }
            if self.active.take().is_some() {
                tracing::info!("{}", self.unset);
            }
            self.changes.changed().await.ok()?;
        }
    }

    /// Resolves when new settings arrive; `false` when they can change no
    /// more (the task ends).
    pub(crate) async fn changed(&mut self) -> bool {
        self.changes.changed().await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::http::HttpClient;

    fn settings(report_url: Option<&str>) -> Arc<Settings> {
        let client = HttpClient::new(None).expect("client");
        Arc::new(Settings {
            cfg: UpstreamConfig {
                report_url: report_url.map(str::to_string),
                ..Default::default()
            },
            signal_client: client.clone(),
            client,
        })
    }

    #[tokio::test]
    async fn a_round_is_fresh_only_for_another_url_and_an_unset_one_waits() {
        let (tx, rx) = watch::channel(settings(Some("https://a/r?sig=secret")));
        let mut follow = FollowUrl::new(rx, |c| c.report_url.as_ref(), "unset");
        let first = follow.next().await.expect("a url");
        assert!(first.fresh);
        assert_eq!(first.url, "https://a/r?sig=secret");
        assert!(!first.shown.contains("secret"), "{}", first.shown);
        // New settings, the same URL: the task carries on.
        tx.send_replace(settings(Some("https://a/r?sig=secret")));
        assert!(follow.changed().await);
        assert!(!follow.next().await.expect("a url").fresh);
        // Unset: no round until a URL comes back, and then it starts afresh.
        tx.send_replace(settings(None));
        let waiting = tokio::time::timeout(Duration::from_millis(50), follow.next()).await;
        assert!(waiting.is_err(), "a round without a URL");
        tx.send_replace(settings(Some("https://a/r?sig=secret")));
        assert!(follow.next().await.expect("a url").fresh);
        tx.send_replace(settings(Some("https://b/r")));
        let moved = follow.next().await.expect("a url");
        assert!(moved.fresh);
        assert_eq!(moved.url, "https://b/r");
        // The settings can change no more: the task ends.
        tx.send_replace(settings(None));
        drop(tx);
        assert!(follow.next().await.is_none());
    }
}
