//! The metadata pull, as os-collect-config's request collector does it:
//! a GET of `[upstream] metadata_url` every `poll_interval` with
//! `If-None-Match`/`If-Modified-Since` (a 304 costs nothing), exponential
//! backoff with jitter on errors.
//!
//! Only `group: berth` documents are berth's; the rest belong to other
//! agents and are listed once in the log, never signalled. Pulled state is
//! keyed by service: each document goes through [`Upstream::submit`]
//! (idempotent by id; the agent leaves an unchanged spec alone), and a
//! service the pull put here is deleted only when no current document names
//! it (or by a `deploy_action: DELETE` document). A metadata round with any
//! malformed entry deletes nothing: a document that cannot be read may be
//! the one that names the service.

use std::collections::BTreeSet;
use std::time::Duration;

use berth_agent::{AgentError, Verb};
use berth_core::heat::{Classified, parse_metadata};
use http::Method;
use http::StatusCode;
use serde_json::Value;

use crate::follow::FollowUrl;
use crate::http::HttpClient;
use crate::{Origin, OriginKind, Upstream, UpstreamError, jitter};

/// Longest backoff after errors, on top of the poll interval.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Default)]
struct PullState {
    etag: Option<String>,
    last_modified: Option<String>,
    /// Problems already logged (each is logged once while it lasts).
    logged: BTreeSet<String>,
    /// Foreign documents already listed: (group, id).
    not_ours: BTreeSet<(String, String)>,
}

impl PullState {
    /// Logs `msg` unless it was logged before; returns whether it was new.
    fn once(&mut self, msg: String) -> bool {
        self.logged.insert(msg)
    }
}

/// Polls `metadata_url` while it is set; follows SIGHUP's new settings
/// (a new URL starts afresh, an unset one idles until set).
pub(crate) async fn run(up: Upstream) {
    let mut follow = FollowUrl::new(
        up.inner.settings.subscribe(),
        |c| c.metadata_url.as_ref(),
        "metadata_url is unset: no more polling; pulled services stay",
    );
    let mut st = PullState::default();
    let mut failures = 0u32;
    loop {
        let Some(round) = follow.next().await else {
            return;
        };
        let (settings, url, shown) = (&round.settings, round.url.as_str(), &round.shown);
        let interval = settings.cfg.poll_interval;
        if round.fresh {
            tracing::info!(url = shown, ?interval, "polling Heat metadata");
            st = PullState::default();
            failures = 0;
        }
        let delay = match poll_once(&up, &settings.client, url, shown, &mut st).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(url = shown, "metadata fetched again");
                }
                failures = 0;
                interval
            }
            Err(msg) => {
                failures = failures.saturating_add(1);
                if st.once(msg.clone()) {
                    tracing::warn!(
                        url = shown,
                        error = msg,
                        "metadata poll failed; backing off"
                    );
                } else {
                    tracing::debug!(url = shown, error = msg, "metadata poll failed again");
                }
                let base =
                    Duration::from_secs(1u64 << failures.saturating_sub(1).min(9)).min(MAX_BACKOFF);
                interval + base.mul_f64(1.0 - jitter() / 2.0)
            }
        };
        // New settings: poll again at once with them.
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            changed = follow.changed() => if !changed { return },
        }
    }
}

async fn poll_once(
    up: &Upstream,
    client: &HttpClient,
    url: &str,
    shown: &str,
    st: &mut PullState,
) -> Result<(), String> {
    let mut headers: Vec<(&str, &str)> = vec![("Accept", "application/json")];
    if let Some(e) = &st.etag {
        headers.push(("If-None-Match", e));
    }
    if let Some(m) = &st.last_modified {
        headers.push(("If-Modified-Since", m));
    }
    let resp = client
        .send(Method::GET, url, &headers, None)
        .await
        .map_err(|e| format!("GET {shown}: {e}"))?;
    if resp.status == StatusCode::NOT_MODIFIED {
        return Ok(());
    }
    if !resp.status.is_success() {
        return Err(format!("GET {shown} answered {}", resp.status));
    }
    let value: Value = serde_json::from_slice(&resp.body)
        .map_err(|e| format!("metadata from {shown} is not JSON: {e}"))?;
    let entries = parse_metadata(&value).map_err(|e| format!("metadata from {shown}: {e}"))?;
    let raw: &[Value] = value
        .get("deployments")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut clean = true;
    let mut refetch = false;
    let mut named: BTreeSet<String> = BTreeSet::new();
    let mut applied: BTreeSet<String> = BTreeSet::new();
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    // The ids of berth's documents in this round.
    let mut listed: BTreeSet<String> = BTreeSet::new();
    let mut ours = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let classified = entry.and_then(|doc| doc.classify());
        let bd = match classified {
            Err(e) => {
                clean = false;
                let msg = format!("metadata from {shown}: malformed document: {e}");
                if st.once(msg.clone()) {
                    tracing::error!("{msg}; nothing is deleted while it is malformed");
                }
                continue;
            }
            Ok(Classified::NotOurs(n)) => {
                let id = n.id.unwrap_or_default();
                if st.not_ours.insert((n.group.clone(), id.clone())) {
                    tracing::info!("not ours: group {}, id {id}", n.group);
                }
                continue;
            }
            Ok(Classified::Berth(bd)) => bd,
        };
        ours.push((i, bd));
    }
    // A document whose services depend on another's goes after it, so one
    // round applies them in order whatever order Heat lists them in.
    let order = {
        let groups: Vec<&[berth_core::spec::ServiceSpec]> =
            ours.iter().map(|(_, bd)| bd.services.as_slice()).collect();
        berth_core::waves::group_order(&groups)
    };
    let mut slots: Vec<Option<(usize, _)>> = ours.into_iter().map(Some).collect();
    for (i, bd) in order.into_iter().filter_map(|d| slots[d].take()) {
        listed.insert(bd.id.clone());
        let services: Vec<String> = bd.services.iter().map(|s| s.name.clone()).collect();
        let delete = bd.inputs.is_delete();
        if !delete {
            named.extend(services.iter().cloned());
        }
        let Some(doc) = raw.get(i).cloned() else {
            continue;
        };
        match up.submit(doc, Origin::Pull).await {
            Ok(s) => {
                if delete {
                    deleted.extend(services);
                } else {
                    applied.extend(services);
                }
                if !s.unchanged {
                    tracing::debug!(document = s.doc_id, "pulled Heat document submitted");
                }
            }
            Err(e) => {
                match e {
                    // Fixed only by a new body: the ETag may stay.
                    UpstreamError::Invalid { .. } | UpstreamError::Conflict { .. } => clean = false,
                    UpstreamError::NotOurs { .. } | UpstreamError::Policy(_) => {}
                    // May pass next time: fetch the body again. (A submit
                    // never fails with an outbox operation's errors.)
                    UpstreamError::Agent(_)
                    | UpstreamError::Store(_)
                    | UpstreamError::NotFound(_)
                    | UpstreamError::WrongState(_) => refetch = true,
                }
                let msg = format!("pulled document {}: {e}", bd.id);
                if st.once(msg.clone()) {
                    tracing::error!("{msg}");
                }
            }
        }
    }
    let inner = &up.inner;
    let mut pulled = inner.index.pulled().map_err(|e| e.to_string())?;
    pulled.services.extend(applied);
    for s in &deleted {
        pulled.services.remove(s);
    }
    if clean {
        let gone: Vec<String> = pulled
            .services
            .iter()
            .filter(|s| !named.contains(*s))
            .cloned()
            .collect();
        for service in gone {
            let owner = inner
                .handle
                .snapshot()
                .services
                .get(&service)
                .map(|s| s.owner.clone());
            if owner.as_deref() == Some("pull") {
                match inner.handle.verb(&service, Verb::Delete, "pull").await {
                    Ok(_) | Err(AgentError::NoSuchService { .. }) => {
                        tracing::info!(service, "no pulled document names it any more: deleted");
                    }
                    Err(e) => {
                        tracing::error!(service, error = %e, "cannot delete a service no pulled document names");
                        continue;
                    }
                }
            }
            pulled.services.remove(&service);
        }
    }
    inner.index.set_pulled(&pulled).map_err(|e| e.to_string())?;
    if clean {
        // A pulled document Heat no longer lists will not come back by the
        // pull: its entry goes (the index would grow for the node's whole
        // life otherwise). A listed one stays, so that the next round finds
        // it and applies nothing.
        inner
            .forget_documents(
                |e| e.origin == OriginKind::Pull && !listed.contains(&e.doc_id),
                "pulled Heat documents the metadata no longer lists",
            )
            .await;
    }
    // Remembered only once the content was acted on (and not when a
    // document could not be applied for a reason that may pass).
    if refetch {
        st.etag = None;
        st.last_modified = None;
    } else {
        st.etag = header(&resp.headers, "etag");
        st.last_modified = header(&resp.headers, "last-modified");
    }
    Ok(())
}

fn header(h: &http::HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
