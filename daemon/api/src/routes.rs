//! The route table (ARCHITECTURE.md §5).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use berth_agent::{Handle, Verb};
use berth_core::apply_body::{self, BodyError};
use berth_core::dto::{
    ApplyRequest, ApplyResponse, DocumentStatus, ErrorBody, EventsResponse, NodeInfo,
    RollbackRequest, ServiceDetail, ServiceStatus, VerbResponse,
};
use berth_core::policy::{NodeContext, NodePolicy};
use berth_core::record::{Deployment, Source};
use berth_core::runtime::LogOptions;
use berth_core::spec::ServiceSpec;
use futures_util::StreamExt;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use serde::Deserialize;

use crate::auth::{Role, Tokens};
use crate::metrics::Metrics;
use crate::tcp::TcpPeer;
use crate::unix::{PeerPolicy, UnixPeer};
use crate::upstream::UpstreamApi;
use crate::{Actor, ApiError};

/// Long polls are capped here whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Spec bodies are small; the cap keeps a bad client from filling memory.
pub const MAX_BODY: usize = 1 << 20;
/// A request body must arrive within this (headers have their own timeout
/// in the TCP listener). Not a total-request timeout: long polls and
/// streams answer for as long as they need.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The OpenAPI document of this router (`GET /v1/openapi.json`).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// What the TCP API checks callers and pushed specs against. berthd
/// replaces it on SIGHUP (a rotated tokens file, a changed `[policy]`):
/// each request reads the value current when it arrives.
#[derive(Clone)]
pub struct TcpAccess {
    pub tokens: Arc<Tokens>,
    /// Checked against every spec that arrives over TCP.
    pub node_policy: Arc<NodePolicy>,
}

/// How callers are authenticated.
#[derive(Clone)]
enum Access {
    /// The local socket: SO_PEERCRED, no token; the node policy for peers
    /// other than root and berthd's own uid (members of `socket_group`).
    Unix(Arc<PeerPolicy>),
    /// TCP: bearer tokens and the node policy.
    Tcp(tokio::sync::watch::Receiver<TcpAccess>),
}

#[derive(Clone)]
struct AppState {
    handle: Handle,
    access: Access,
    /// Heat documents and the signal outbox (`None`: routes answer 503).
    upstream: Option<Arc<dyn UpstreamApi>>,
}

/// The node policy a request's specs are checked against, set by
/// [`authenticate`]: every TCP caller, and Unix peers that are neither root
/// nor berthd's own uid. Absent: a trusted local operator.
#[derive(Clone)]
struct Checked(Arc<NodePolicy>);

/// The whole API for the local socket.
pub fn router(
    handle: Handle,
    policy: PeerPolicy,
    upstream: Option<Arc<dyn UpstreamApi>>,
) -> Router {
    build(AppState {
        handle,
        access: Access::Unix(Arc::new(policy)),
        upstream,
    })
}

/// The whole API for TCP: bearer tokens (a read token may only GET) and the
/// node policy applied to every spec pushed, both read from `access` as it
/// is when a request arrives.
pub fn tcp_router(
    handle: Handle,
    access: tokio::sync::watch::Receiver<TcpAccess>,
    upstream: Option<Arc<dyn UpstreamApi>>,
) -> Router {
    build(AppState {
        handle,
        access: Access::Tcp(access),
        upstream,
    })
}

/// Routes that need credentials (ARCHITECTURE.md §5). The router is built
/// from these two tables only, so the OpenAPI test can check them.
fn api_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/v1/node", get(node)),
        ("/v1/services", get(services)),
        (
            "/v1/services/{name}",
            get(service).put(put_service).delete(delete_service),
        ),
        ("/v1/apply", post(apply)),
        ("/v1/services/{name}/{verb}", post(verb)),
        ("/v1/services/{name}/hooks/{phase}/clear", post(clear_hook)),
        ("/v1/services/{name}/deployments", get(history)),
        ("/v1/services/{name}/logs", get(logs)),
        ("/v1/deployments", post(post_deployment)),
        ("/v1/deployments/{id}", get(deployment)),
        ("/v1/outbox", get(outbox_list)),
        ("/v1/outbox/{seq}", axum::routing::delete(outbox_drop)),
        ("/v1/outbox/{seq}/retry", post(outbox_retry)),
        ("/v1/events", get(events)),
        ("/v1/images", get(images)),
        ("/v1/images/prune", post(prune_images)),
        ("/v1/adopt", post(adopt)),
        ("/metrics", get(metrics)),
    ]
}

/// Routes anyone may call.
fn open_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/healthz", get(|| async { "ok" })),
        ("/v1/openapi.json", get(openapi)),
    ]
}

/// Every path the router serves (for the OpenAPI test).
pub fn route_paths() -> Vec<&'static str> {
    api_routes()
        .into_iter()
        .chain(open_routes())
        .map(|(p, _)| p)
        .collect()
}

fn build(state: AppState) -> Router {
    let mut v1 = Router::new();
    for (path, route) in api_routes() {
        v1 = v1.route(path, route);
    }
    // Authenticate first, then read the body (bounded in size and time).
    let v1 = v1
        .route_layer(middleware::from_fn(read_body))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let mut open = Router::new();
    for (path, route) in open_routes() {
        open = open.route(path, route);
    }
    open.merge(v1)
        .fallback(no_route)
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(json_errors))
}

async fn openapi() -> Response {
    let mut resp = Response::new(Body::from(OPENAPI));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn no_route(req: Request) -> ApiError {
    ApiError::NotFound(format!("no route {} {}", req.method(), req.uri().path()))
}

/// Reads the whole body before the handler runs: at most [`MAX_BODY`]
/// bytes, within [`BODY_READ_TIMEOUT`].
async fn read_body(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    let bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Err(_) => return ApiError::BodyTimeout(BODY_READ_TIMEOUT).into_response(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return ApiError::PayloadTooLarge { limit: MAX_BODY }.into_response();
        }
        Ok(Err(e)) => {
            return ApiError::BadRequest(format!("cannot read the body: {e}")).into_response();
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Every error answers with an [`ErrorBody`]: axum's own rejections (a bad
/// query string, a wrong method) are plain text, so they are wrapped here.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // Rejection texts are short; anything longer is cut, never buffered whole.
    let text = match http_body_util::Limited::new(body, 4096).collect().await {
        Ok(c) => String::from_utf8_lossy(&c.to_bytes()).trim().to_string(),
        Err(_) => String::new(),
    };
    let kind = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let error = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string()
    } else {
        text
    };
    let body = serde_json::to_vec(&ErrorBody {
        kind: kind.to_string(),
        error,
        details: vec![],
    })
    .unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let (actor, checked) = match &state.access {
        Access::Unix(policy) => match unix_actor(policy, &req) {
            Ok(a) => a,
            Err(e) => return e.into_response(),
        },
        Access::Tcp(access) => {
            let (tokens, node_policy) = {
                let a = access.borrow();
                (a.tokens.clone(), a.node_policy.clone())
            };
            match token_actor(&tokens, &req) {
                Ok(a) => (a, Some(node_policy)),
                Err(e) => return e.into_response(),
            }
        }
    };
    req.extensions_mut().insert(actor);
    if let Some(p) = checked {
        req.extensions_mut().insert(Checked(p));
    }
    next.run(req).await
}

fn token_actor(tokens: &Tokens, req: &Request) -> Result<Actor, ApiError> {
    let peer = req
        .extensions()
        .get::<TcpPeer>()
        .map(|p| p.addr.to_string());
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(ApiError::Unauthorized(
            "this API needs a token: Authorization: Bearer TOKEN".into(),
        ));
    };
    let Some(who) = tokens.authenticate(value.as_bytes()) else {
        tracing::warn!(peer, "refused a TCP API request: no token matches");
        return Err(ApiError::Unauthorized("no token matches".into()));
    };
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    if !reads && who.role != Role::Admin {
        return Err(ApiError::Forbidden(format!(
            "{} may only read; {} {} needs an admin token",
            who.name,
            req.method(),
            req.uri().path()
        )));
    }
    Ok(Actor(who.name))
}

/// The caller, and the node policy its specs are checked against (`None`:
/// root or berthd's own uid, trusted).
fn unix_actor(
    policy: &PeerPolicy,
    req: &Request,
) -> Result<(Actor, Option<Arc<NodePolicy>>), ApiError> {
    // MockConnectInfo is how tests (and any in-process caller) say who they are.
    let peer = req
        .extensions()
        .get::<ConnectInfo<UnixPeer>>()
        .map(|c| c.0)
        .or_else(|| {
            req.extensions()
                .get::<axum::extract::connect_info::MockConnectInfo<UnixPeer>>()
                .map(|c| c.0)
        });
    let Some(peer) = peer else {
        return Err(ApiError::Forbidden("peer credentials unavailable".into()));
    };
    if !policy.allows(&peer) {
        tracing::warn!(uid = peer.uid, gid = peer.gid, "refused a local API client");
        return Err(ApiError::Forbidden(format!(
            "uid {} may not use berthd's socket: it must be root or in the socket_group",
            peer.uid
        )));
    }
    Ok((
        Actor(format!("uid:{}", peer.uid)),
        policy.node_policy_for(&peer),
    ))
}

/// The node policy's verdict on the specs of a request it applies to
/// (`field` names each spec in the request). Host paths are resolved with
/// the filesystem here; `container:NAME` joins are checked against this
/// node's services as they are, overlaid with the request's own specs.
fn check_policy(
    state: &AppState,
    checked: Option<&axum::Extension<Checked>>,
    specs: &[(String, &ServiceSpec)],
) -> Result<(), ApiError> {
    let Some(axum::Extension(Checked(policy))) = checked else {
        return Ok(());
    };
    let mut services: std::collections::BTreeMap<String, ServiceSpec> = state
        .handle
        .snapshot()
        .currents
        .iter()
        .map(|(name, d)| (name.clone(), d.spec.clone()))
        .collect();
    for (_, spec) in specs {
        services.insert(spec.name.clone(), (*spec).clone());
    }
    let node = NodeContext {
        host_paths: &berth_sources::hostpath::FsResolver,
        services: &services,
    };
    let violations: Vec<_> = specs
        .iter()
        .flat_map(|(field, spec)| policy.check_spec(spec, field, &node))
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        tracing::warn!(first = %violations[0], count = violations.len(), "refused a pushed spec");
        Err(ApiError::Policy(violations))
    }
}

fn actor(req_actor: Option<axum::Extension<Actor>>) -> String {
    req_actor
        .map(|axum::Extension(a)| a.0)
        .unwrap_or_else(|| "unknown".into())
}

async fn node(State(s): State<AppState>) -> Json<NodeInfo> {
    let mut node = s.handle.snapshot().node.clone();
    if let Some(up) = &s.upstream {
        node.outbox = up.summary();
    }
    Json(node)
}

fn upstream(s: &AppState) -> Result<&Arc<dyn UpstreamApi>, ApiError> {
    s.upstream.as_ref().ok_or_else(|| {
        ApiError::Unavailable("upstream (Heat documents, outbox) is not running".into())
    })
}

/// `POST /v1/deployments`: a Heat software-deployment document. 202 with
/// its status when accepted, 200 when the same id and body came before.
async fn post_deployment(
    State(s): State<AppState>,
    who: Option<axum::Extension<Actor>>,
    checked: Option<axum::Extension<Checked>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let doc = json_body(&body)?;
    let check_policy = checked.is_some();
    let status = upstream(&s)?.submit(doc, actor(who), check_policy).await?;
    let code = if status.unchanged {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(status)).into_response())
}

async fn outbox_list(
    State(s): State<AppState>,
) -> Result<Json<Vec<berth_core::heat::outbox::OutboxView>>, ApiError> {
    Ok(Json(upstream(&s)?.outbox()?))
}

fn outbox_seq(seq: &str) -> Result<u64, ApiError> {
    seq.parse()
        .map_err(|_| ApiError::BadRequest(format!("{seq:?} is not an outbox sequence number")))
}

async fn outbox_retry(
    State(s): State<AppState>,
    Path(seq): Path<String>,
) -> Result<Json<berth_core::heat::outbox::OutboxView>, ApiError> {
    Ok(Json(upstream(&s)?.retry(outbox_seq(&seq)?)?))
}

async fn outbox_drop(
    State(s): State<AppState>,
    Path(seq): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let seq = outbox_seq(&seq)?;
    if upstream(&s)?.drop_entry(seq)? {
        Ok(Json(serde_json::json!({ "seq": seq, "dropped": true })))
    } else {
        Err(ApiError::NotFound(format!("no outbox entry {seq}")))
    }
}

async fn services(State(s): State<AppState>) -> Json<Vec<ServiceStatus>> {
    Json(s.handle.snapshot().services.values().cloned().collect())
}

async fn service(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ServiceDetail>, ApiError> {
    let snap = s.handle.snapshot();
    let status = snap
        .services
        .get(&name)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no service named {name}")))?;
    Ok(Json(ServiceDetail {
        status,
        current: snap.currents.get(&name).map(|d| (**d).clone()),
    }))
}

/// A refused apply body: a field of the wrong JSON type answers 422, a
/// wrong value 400 (both with every problem in `details`), and a body
/// that is not the request at all 400.
fn body_error(e: BodyError) -> ApiError {
    let wrong_type = e.has_wrong_type();
    match e {
        BodyError::Request(m) => ApiError::BadRequest(m),
        BodyError::Fields(problems) => {
            let details = problems.iter().map(ToString::to_string).collect();
            if wrong_type {
                ApiError::WrongType { details }
            } else {
                ApiError::InvalidSpec { details }
            }
        }
    }
}

fn json_body(body: &Bytes) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))
}

async fn put_service(
    State(s): State<AppState>,
    Path(name): Path<String>,
    who: Option<axum::Extension<Actor>>,
    checked: Option<axum::Extension<Checked>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let spec = apply_body::service(&json_body(&body)?).map_err(body_error)?;
    if spec.name != name {
        return Err(ApiError::BadRequest(format!(
            "the body names service {} but the path names {name}",
            spec.name
        )));
    }
    check_policy(&s, checked.as_ref(), &[(String::new(), &spec)])?;
    let resp = s
        .handle
        .apply(
            ApplyRequest {
                services: vec![spec],
                force: false,
            },
            Source::Api,
            &actor(who),
            false,
        )
        .await?;
    let result = resp.results.into_iter().next();
    let Some(result) = result else {
        return Err(ApiError::BadRequest("nothing applied".into()));
    };
    let status = if result.change == berth_core::dto::Change::Unchanged {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let Some(record) = result.deployment else {
        return Err(ApiError::NotFound(format!("no record for {name}")));
    };
    Ok((status, Json(record)).into_response())
}

#[derive(Deserialize)]
struct DryRun {
    #[serde(default)]
    dry_run: bool,
}

async fn apply(
    State(s): State<AppState>,
    Query(q): Query<DryRun>,
    who: Option<axum::Extension<Actor>>,
    checked: Option<axum::Extension<Checked>>,
    body: Bytes,
) -> Result<Json<ApplyResponse>, ApiError> {
    let ApplyRequest {
        services: specs,
        force,
    } = apply_body::apply_request(&json_body(&body)?).map_err(body_error)?;
    let fields: Vec<(String, &ServiceSpec)> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| (format!("services[{i}]"), spec))
        .collect();
    check_policy(&s, checked.as_ref(), &fields)?;
    let resp = s
        .handle
        .apply(
            ApplyRequest {
                services: specs,
                force,
            },
            Source::Api,
            &actor(who),
            q.dry_run,
        )
        .await?;
    Ok(Json(resp))
}

/// Every image berth knows: who uses it, and whether a prune may remove it.
async fn images(
    State(s): State<AppState>,
) -> Result<Json<berth_core::images::ImagesResponse>, ApiError> {
    Ok(Json(s.handle.images().await?))
}

/// Removes the pulled images no kept record names (`?dry_run=true`: says
/// which, removes nothing).
async fn prune_images(
    State(s): State<AppState>,
    Query(q): Query<DryRun>,
    who: Option<axum::Extension<Actor>>,
) -> Result<Json<berth_core::images::PruneResponse>, ApiError> {
    Ok(Json(s.handle.prune_images(q.dry_run, &actor(who)).await?))
}

/// `POST /v1/adopt`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdoptBody {
    from: String,
    #[serde(default)]
    config_id: Option<String>,
    #[serde(default)]
    check: bool,
}

/// `berthctl adopt --check`: each container paunch, tripleo_ansible or the
/// docker-cmd hook started, against its config. Reads only; taking over
/// (`check: false`) is refused as not implemented yet.
async fn adopt(
    State(s): State<AppState>,
    body: Bytes,
) -> Result<Json<berth_core::adopt::AdoptReport>, ApiError> {
    let b: AdoptBody = serde_json::from_value(json_body(&body)?)
        .map_err(|e| ApiError::BadRequest(format!("the adopt request: {e}")))?;
    let from = berth_core::adopt::AdoptFrom::parse(&b.from).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "from: expected paunch, tripleo or docker-cmd (got {:?})",
            b.from
        ))
    })?;
    if !b.check {
        return Err(ApiError::NotImplemented(
            "not yet: adopt --check only. Taking containers over is not implemented in this \
             version; `check: true` reports what would be adopted and what differs"
                .to_string(),
        ));
    }
    Ok(Json(s.handle.adopt_check(from, b.config_id).await?))
}

#[derive(Deserialize)]
struct DeleteQuery {
    /// Also remove, once the container is gone, the named volumes the
    /// service mounted that berth created for this node and no other
    /// service mounts (`berthctl delete --volumes`).
    #[serde(default)]
    volumes: bool,
}

async fn delete_service(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
    who: Option<axum::Extension<Actor>>,
) -> Result<Json<VerbResponse>, ApiError> {
    let verb = if q.volumes {
        Verb::DeleteWithVolumes
    } else {
        Verb::Delete
    };
    Ok(Json(s.handle.verb(&name, verb, &actor(who)).await?))
}

async fn verb(
    State(s): State<AppState>,
    Path((name, verb)): Path<(String, String)>,
    who: Option<axum::Extension<Actor>>,
    body: Bytes,
) -> Result<Json<VerbResponse>, ApiError> {
    let verb = match verb.as_str() {
        "stop" => Verb::Stop,
        "start" => Verb::Start,
        "restart" => Verb::Restart,
        "reconfigure" => Verb::Reconfigure,
        "hold" => Verb::Hold,
        "release" => Verb::Release,
        "rollback" => {
            let req: RollbackRequest = if body.is_empty() {
                RollbackRequest::default()
            } else {
                serde_json::from_slice(&body)
                    .map_err(|e| ApiError::BadRequest(format!("rollback body: {e}")))?
            };
            Verb::Rollback {
                generation: req.generation,
            }
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "no verb {other:?}; verbs: stop, start, restart, reconfigure, hold, release, rollback"
            )));
        }
    };
    Ok(Json(s.handle.verb(&name, verb, &actor(who)).await?))
}

/// `berthctl hook clear SERVICE PHASE`: releases the breakpoints of that
/// phase the service's current deployment waits at.
async fn clear_hook(
    State(s): State<AppState>,
    Path((name, phase)): Path<(String, String)>,
    who: Option<axum::Extension<Actor>>,
) -> Result<Json<VerbResponse>, ApiError> {
    let phase = berth_core::spec::HookPhase::parse(&phase).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no hook phase {phase:?}; phases: pre_update, post_update, pre_delete"
        ))
    })?;
    let verb = Verb::ClearHook { phase };
    Ok(Json(s.handle.verb(&name, verb, &actor(who)).await?))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn history(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<Limit>,
) -> Result<Json<Vec<Deployment>>, ApiError> {
    Ok(Json(
        s.handle
            .history(&name, q.limit.unwrap_or(usize::MAX))
            .await?,
    ))
}

#[derive(Deserialize)]
struct Wait {
    wait: Option<String>,
}

/// A record by its id (`<service>-<generation>`), or a Heat document by its
/// id (the document's status, with its records).
async fn deployment(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Wait>,
) -> Result<Response, ApiError> {
    let wait = match &q.wait {
        None => None,
        Some(w) => Some(
            berth_core::units::parse_duration(w)
                .map_err(|e| ApiError::BadRequest(format!("wait: {e}")))?
                .min(MAX_WAIT),
        ),
    };
    let record = match wait {
        None => s.handle.deployment(&id).await,
        Some(wait) => s.handle.wait_deployment(&id, wait).await,
    };
    match record {
        Ok(d) => Ok(Json::<Deployment>(d).into_response()),
        Err(berth_agent::AgentError::NoSuchDeployment { .. }) if s.upstream.is_some() => {
            let doc = heat_document(upstream(&s)?, &id, wait.unwrap_or_default()).await?;
            Ok(Json(doc).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// A Heat document by its id: as it is, or once it is done if that is
/// within `wait`. Waits on upstream's word that a document is done (to
/// which it subscribes before it looks, so none is missed), not on a timer.
async fn heat_document(
    up: &Arc<dyn UpstreamApi>,
    id: &str,
    wait: Duration,
) -> Result<DocumentStatus, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut done = up.watch_done();
    loop {
        let Some(doc) = up.lookup(id.to_string()).await else {
            return Err(ApiError::NotFound(format!(
                "no deployment {id} (neither a record id nor a Heat document id)"
            )));
        };
        if doc.done || tokio::time::Instant::now() >= deadline {
            return Ok(doc);
        }
        match tokio::time::timeout_at(deadline, done.changed()).await {
            // A document is done (perhaps another): look again.
            Ok(Ok(())) => {}
            // Upstream stopped: nothing is done any more; the answer is
            // the document as it is at the deadline, as before.
            Ok(Err(_)) => tokio::time::sleep_until(deadline).await,
            // The deadline: one last look.
            Err(_) => {}
        }
    }
}

#[derive(Deserialize)]
struct LogsQuery {
    #[serde(default)]
    follow: bool,
    tail: Option<u64>,
}

async fn logs(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let stream = s
        .handle
        .logs(
            &name,
            LogOptions {
                follow: q.follow,
                tail: q.tail,
            },
        )
        .await?;
    let body = Body::from_stream(stream.map(|chunk| match chunk {
        Ok(c) => Ok::<Bytes, Infallible>(Bytes::from(c.bytes)),
        Err(e) => Ok(Bytes::from(format!("\n[berth: log stream ended: {e}]\n"))),
    }));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    since: u64,
    #[serde(default)]
    follow: bool,
}

async fn events(State(s): State<AppState>, Query(q): Query<EventsQuery>) -> Response {
    if !q.follow {
        let r: EventsResponse = s.handle.events_since(q.since);
        return Json(r).into_response();
    }
    // Subscribe first, then read the backlog, so nothing falls in between;
    // duplicates are dropped by sequence number.
    let rx = s.handle.subscribe_events();
    let backlog = s.handle.events_since(q.since);
    let mut head = String::new();
    if backlog.reset {
        head.push_str("event: reset\ndata: {}\n\n");
    }
    let mut last = q.since;
    for e in &backlog.events {
        last = last.max(e.seq);
        head.push_str(&sse_data(e));
    }
    let live = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |item| {
        let out = match item {
            Ok(e) if e.seq > last => Some(Ok::<Bytes, Infallible>(Bytes::from(sse_data(&e)))),
            Ok(_) => None,
            // A slow client missed events: say so rather than pretend.
            Err(_) => Some(Ok(Bytes::from_static(b"event: reset\ndata: {}\n\n"))),
        };
        async move { out }
    });
    let stream =
        futures_util::stream::once(async move { Ok::<Bytes, Infallible>(Bytes::from(head)) })
            .chain(live);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn sse_data(e: &berth_core::event::Event) -> String {
    format!(
        "id: {}\ndata: {}\n\n",
        e.seq,
        serde_json::to_string(e).unwrap_or_else(|_| "{}".into())
    )
}

/// Prometheus text (see [`crate::metrics`]).
async fn metrics(State(s): State<AppState>) -> Response {
    let snap = s.handle.snapshot();
    let outbox = s.upstream.as_ref().map(|up| up.summary());
    let text = Metrics::collect(&snap.node, snap.services.values(), outbox).render();
    let mut resp = Response::new(Body::from(text));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    resp
}
