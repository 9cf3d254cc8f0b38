//! Documents through the agent: submit, wait, compose the signal, queue it.

use std::sync::Arc;
use std::time::Duration;

use berth_agent::{AgentError, Verb};
use berth_core::dto::{ApplyRequest, Change};
use berth_core::heat::outbox::NewEntry;
use berth_core::heat::{
    BerthDeployment, Classified, HeatError, ServiceOutcome, SignalPlan, compose_signal,
    document_hash, parse_document,
};
use berth_core::record::{DeployAction, Deployment, Source, Status};
use serde_json::Value;

use crate::index::DocIndex;
use crate::{Inner, Origin, Submitted, UpstreamError, index_failed, now_ms};

/// How long one `wait_deployment` call waits before it is asked again.
const WAIT_STEP: Duration = Duration::from_secs(60);

fn invalid(e: HeatError) -> UpstreamError {
    let details = match &e {
        HeatError::Config(errs) => errs.0.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    };
    UpstreamError::Invalid {
        path: e.path().to_string(),
        message: format!("invalid Heat document: {e}"),
        details,
    }
}

/// Parses and validates; the signal plan is checked too, so a document
/// whose signal could never be sent is refused before anything runs.
pub(crate) fn classify(doc: &Value) -> Result<BerthDeployment, UpstreamError> {
    let parsed = parse_document(doc).map_err(invalid)?;
    match parsed.classify().map_err(invalid)? {
        Classified::NotOurs(n) => Err(UpstreamError::NotOurs { group: n.group }),
        Classified::Berth(bd) => {
            bd.inputs.signal_plan().map_err(invalid)?;
            Ok(*bd)
        }
    }
}

pub(crate) async fn submit(
    inner: &Arc<Inner>,
    doc: Value,
    origin: Origin,
) -> Result<Submitted, UpstreamError> {
    let bd = classify(&doc)?;
    let hash = document_hash(&doc);
    let _guard = inner.submit_lock.lock().await;
    if let Some(existing) = inner.index.get(&bd.id).map_err(index_failed)? {
        if existing.doc_hash == hash {
            return Ok(submitted(inner, &existing, true).await);
        }
        return Err(UpstreamError::Conflict { doc_id: bd.id });
    }
    if let Origin::Push {
        check_policy: true, ..
    } = &origin
    {
        let settings = inner.settings();
        // `container:NAME` joins are judged against this node's services
        // as they are, overlaid with the document's; host paths where they
        // lead now.
        let mut services: std::collections::BTreeMap<String, berth_core::spec::ServiceSpec> = inner
            .handle
            .snapshot()
            .currents
            .iter()
            .map(|(name, d)| (name.clone(), d.spec.clone()))
            .collect();
        for s in &bd.services {
            services.insert(s.name.clone(), s.clone());
        }
        let node = berth_core::policy::NodeContext {
            host_paths: &berth_sources::hostpath::FsResolver,
            services: &services,
        };
        let violations: Vec<_> = bd
            .services
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                settings
                    .cfg
                    .policy
                    .check_spec(s, &format!("config[{i}]"), &node)
            })
            .collect();
        if !violations.is_empty() {
            return Err(UpstreamError::Policy(violations));
        }
    }
    let actor = origin.actor();
    let delete = bd.inputs.is_delete();
    let services: Vec<String> = bd.services.iter().map(|s| s.name.clone()).collect();
    let mut records: Vec<Option<Deployment>> = Vec::with_capacity(services.len());
    let source = match origin {
        Origin::Pull => Source::Pull,
        Origin::Push { .. } => Source::Api,
    };
    if delete {
        // Like an apply, a DELETE document may only remove what its own
        // source owns (checked for every service before any is deleted).
        // The owner is read from the newest committed record through the
        // loop, not from the published snapshot: the snapshot may not show
        // an apply answered a moment ago yet, and a stale one let a pulled
        // delete remove a service a push had just taken.
        for name in &services {
            let newest = match inner.handle.history(name, 1).await {
                Ok(h) => h.into_iter().next(),
                Err(AgentError::NoSuchService { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            if let Some(d) = newest
                && d.source.describe() != source.describe()
                && !is_deleted(&d)
            {
                return Err(AgentError::Conflict {
                    service: name.clone(),
                    owner: d.source.describe(),
                }
                .into());
            }
        }
        for name in &services {
            match inner.handle.verb(name, Verb::Delete, &actor).await {
                Ok(resp) => records.push(resp.deployment),
                Err(AgentError::NoSuchService { .. }) => records.push(None),
                // Already on its way out: its DELETE record tells the outcome.
                Err(e @ AgentError::Refused { .. }) => {
                    match inner.handle.snapshot().currents.get(name) {
                        Some(d) if d.action == DeployAction::Delete => {
                            records.push(Some((**d).clone()))
                        }
                        _ => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    } else {
        let req = ApplyRequest {
            services: bd.services.clone(),
            force: false,
        };
        let resp = inner.handle.apply(req, source, &actor, false).await?;
        // What a service already has, for those the apply left unchanged.
        let snap = inner.handle.snapshot();
        for name in &services {
            let result = resp.results.iter().find(|r| &r.service == name);
            let unchanged = result.is_some_and(|r| r.change == Change::Unchanged);
            let mut created = result.and_then(|r| r.deployment.clone());
            // A new document naming an exec task runs it again, as
            // heat-config runs a docker-cmd document's execs (its spec
            // unchanged, the apply made no record).
            let exec = bd
                .services
                .iter()
                .any(|s| &s.name == name && s.exec_in.is_some());
            if unchanged && exec {
                match inner.handle.verb(name, Verb::Restart, &actor).await {
                    Ok(resp) => created = resp.deployment,
                    // Still running from before: this document gets that run.
                    Err(e) => tracing::info!(
                        document = bd.id,
                        service = name,
                        reason = %e,
                        "exec task not run again"
                    ),
                }
            }
            records.push(created.or_else(|| snap.currents.get(name).map(|d| (**d).clone())));
        }
    }
    // Deleting a service that is already gone may still return its last
    // record: only ids matter from here on.
    let entry = DocIndex {
        doc_id: bd.id.clone(),
        doc_hash: hash,
        services: services.clone(),
        deployments: records
            .iter()
            .map(|r| r.as_ref().map(|d| d.id.clone()).unwrap_or_default())
            .collect(),
        delete,
        origin: origin.kind(),
        actor,
        signal_queued: false,
        created_ms: now_ms(),
        document: Some(doc),
        ..Default::default()
    };
    inner.index.put(&entry).map_err(index_failed)?;
    tracing::info!(
        document = bd.id,
        services = ?services,
        delete,
        signal = bd.inputs.signal_plan().map(|p| p.redacted()).unwrap_or_default(),
        "Heat document accepted"
    );
    spawn_waiter(inner.clone(), entry.doc_id.clone());
    Ok(Submitted {
        doc_id: entry.doc_id,
        services,
        deployments: records
            .into_iter()
            .flatten()
            .map(|d| d.redacted())
            .collect(),
        unchanged: false,
        delete,
        done: false,
    })
}

fn is_deleted(d: &Deployment) -> bool {
    d.action == DeployAction::Delete && d.status == Status::Complete
}

/// The document as it is now.
pub(crate) async fn submitted(inner: &Inner, entry: &DocIndex, unchanged: bool) -> Submitted {
    let mut deployments = Vec::new();
    for id in entry.deployments.iter().filter(|id| !id.is_empty()) {
        if let Ok(d) = inner.handle.deployment(id).await {
            deployments.push(d);
        }
    }
    Submitted {
        doc_id: entry.doc_id.clone(),
        services: entry.services.clone(),
        deployments,
        unchanged,
        delete: entry.delete,
        done: entry.signal_queued,
    }
}

/// Restarts the waiters of documents whose signal is not queued yet.
pub(crate) fn resume(inner: &Arc<Inner>) {
    match inner.index.all() {
        Ok(entries) => {
            for e in entries.into_iter().filter(|e| !e.signal_queued) {
                tracing::info!(
                    document = e.doc_id,
                    "resuming a Heat document not yet signalled"
                );
                spawn_waiter(inner.clone(), e.doc_id);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the Heat document index; unfinished documents are not resumed")
        }
    }
}

fn spawn_waiter(inner: Arc<Inner>, doc_id: String) {
    tokio::spawn(async move {
        if let Err(e) = finish(&inner, &doc_id).await {
            tracing::error!(document = doc_id, error = %e, "cannot finish the Heat document");
        }
    });
}

#[derive(Debug, thiserror::Error)]
enum FinishError {
    #[error(transparent)]
    Store(#[from] berth_core::store::StoreError),
    #[error(transparent)]
    Outbox(#[from] berth_store::OutboxError),
    #[error("berthd is shutting down")]
    ShuttingDown,
}

/// Waits for the record to end; `None` when it is gone.
async fn wait_record(inner: &Inner, id: &str) -> Result<Option<Deployment>, FinishError> {
    let mut failures = 0u32;
    loop {
        match inner.handle.wait_deployment(id, WAIT_STEP).await {
            Ok(d) if d.status.is_terminal() => return Ok(Some(d)),
            Ok(_) => failures = 0,
            Err(AgentError::ShuttingDown) => return Err(FinishError::ShuttingDown),
            Err(AgentError::NoSuchDeployment { .. }) => return Ok(None),
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = Duration::from_millis(500u64 << failures.min(6));
                tracing::warn!(deployment = id, error = %e, "cannot read the record; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// A record's outcome as heat-config-notify reports it. A service has no
/// exit code of its own: COMPLETE is 0, anything else 1 with the status
/// reason on stderr. A task's own exit code is kept (a FAILED task with
/// code 0, e.g. its image was missing, is 1).
pub(crate) fn outcome(service: &str, record: Option<&Deployment>) -> ServiceOutcome {
    let Some(d) = record else {
        return ServiceOutcome {
            service: service.to_string(),
            status_code: 0,
            stdout: "no such service; nothing to do".into(),
            ..Default::default()
        };
    };
    let ok = d.status == Status::Complete;
    let mut code = d
        .outputs
        .deploy_status_code
        .unwrap_or(if ok { 0 } else { 1 });
    if !ok && code == 0 {
        code = 1;
    }
    let mut stderr = d.outputs.deploy_stderr.clone().unwrap_or_default();
    if !ok {
        if !stderr.is_empty() && !stderr.ends_with('\n') {
            stderr.push('\n');
        }
        let reason = if d.status_reason.is_empty() {
            format!("deployment {} {}", d.id, d.status)
        } else {
            format!("deployment {} {}: {}", d.id, d.status, d.status_reason)
        };
        stderr.push_str(&reason);
    }
    ServiceOutcome {
        service: service.to_string(),
        status_code: code,
        stdout: d.outputs.deploy_stdout.clone().unwrap_or_default(),
        stderr,
        outputs: d.outputs.declared.clone(),
    }
}

async fn finish(inner: &Arc<Inner>, doc_id: &str) -> Result<(), FinishError> {
    let Some(mut entry) = inner.index.get(doc_id)? else {
        return Ok(());
    };
    if entry.signal_queued {
        return Ok(());
    }
    let bd = match entry.document.as_ref().map(classify) {
        Some(Ok(bd)) => Some(bd),
        Some(Err(e)) => {
            tracing::error!(document = doc_id, error = %e, "the stored document no longer reads; no signal is sent");
            None
        }
        None => {
            tracing::error!(
                document = doc_id,
                "the index entry lost its document; no signal is sent"
            );
            None
        }
    };
    let mut outcomes = Vec::with_capacity(entry.services.len());
    for (i, service) in entry.services.iter().enumerate() {
        let id = entry.deployments.get(i).cloned().unwrap_or_default();
        let record = if id.is_empty() {
            None
        } else {
            wait_record(inner, &id).await?
        };
        if record.is_none() && !id.is_empty() {
            outcomes.push(ServiceOutcome {
                service: service.clone(),
                status_code: 1,
                stderr: format!("record {id} is gone (pruned from the history)"),
                ..Default::default()
            });
        } else {
            outcomes.push(outcome(service, record.as_ref()));
        }
    }
    if let Some(bd) = bd {
        let signal = compose_signal(doc_id, &bd.outputs, &outcomes);
        let plan = bd.inputs.signal_plan().unwrap_or(SignalPlan::None);
        let target = plan.redacted();
        if plan != SignalPlan::None {
            let queued = inner.outbox.append_unless_delivered(
                NewEntry {
                    key: signal.idempotency_key.clone(),
                    deployment_id: doc_id.to_string(),
                    plan,
                    body: signal.body,
                },
                now_ms(),
            )?;
            match queued {
                Some(queued) => tracing::info!(
                    document = doc_id,
                    failed = signal.failed,
                    reason = signal.status_reason,
                    seq = queued.seq,
                    target,
                    "Heat document done; signal queued"
                ),
                // Queued before a crash that came before its index update,
                // and delivered since the restart.
                None => tracing::info!(
                    document = doc_id,
                    target,
                    "Heat document done; its signal was queued before a restart and is delivered"
                ),
            }
        } else {
            tracing::info!(
                document = doc_id,
                failed = signal.failed,
                "Heat document done; NO_SIGNAL"
            );
        }
    }
    entry.signal_queued = true;
    entry.document = None;
    inner.index.put(&entry)?;
    inner.wake.notify_one();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: Status, code: Option<i64>, reason: &str) -> Deployment {
        let mut d = Deployment {
            id: "web-3".into(),
            status,
            status_reason: reason.into(),
            ..Default::default()
        };
        d.outputs.deploy_status_code = code;
        d.outputs.deploy_stdout = Some("out".into());
        d
    }

    #[test]
    fn a_service_without_an_exit_code_maps_complete_to_0_and_failed_to_1() {
        let ok = outcome("web", Some(&record(Status::Complete, None, "")));
        assert_eq!((ok.status_code, ok.stderr.as_str()), (0, ""));
        let bad = outcome("web", Some(&record(Status::Failed, None, "unhealthy")));
        assert_eq!(bad.status_code, 1);
        assert_eq!(bad.stderr, "deployment web-3 FAILED: unhealthy");
        assert_eq!(bad.stdout, "out");
        let rolled = outcome("web", Some(&record(Status::RolledBack, None, "")));
        assert_eq!(rolled.status_code, 1);
    }

    #[test]
    fn a_task_keeps_its_exit_code() {
        let t = outcome("t", Some(&record(Status::Failed, Some(3), "exited 3")));
        assert_eq!(t.status_code, 3);
        let t = outcome("t", Some(&record(Status::Failed, Some(0), "")));
        assert_eq!(t.status_code, 1, "a FAILED record never reports 0");
        let gone = outcome("t", None);
        assert_eq!(gone.status_code, 0);
    }
}
