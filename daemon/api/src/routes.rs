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
use axum::routing::{get, post};
use berth_agent::{Handle, Verb};
use berth_core::dto::{
    ApplyRequest, ApplyResponse, EventsResponse, NodeInfo, RollbackRequest, ServiceDetail,
    ServiceStatus, VerbResponse,
};
use berth_core::parse::parse_service_json_value;
use berth_core::record::{Deployment, Source};
use berth_core::runtime::LogOptions;
use berth_core::spec::ServiceSpec;
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;

use crate::unix::{PeerPolicy, UnixPeer};
use crate::{Actor, ApiError};

/// Long polls are capped here whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct AppState {
    handle: Handle,
    policy: Arc<PeerPolicy>,
}

/// The whole API for the local socket.
pub fn router(handle: Handle, policy: PeerPolicy) -> Router {
    let state = AppState {
        handle,
        policy: Arc::new(policy),
    };
    let v1 = Router::new()
        .route("/v1/node", get(node))
        .route("/v1/services", get(services))
        .route(
            "/v1/services/{name}",
            get(service).put(put_service).delete(delete_service),
        )
        .route("/v1/apply", post(apply))
        .route("/v1/services/{name}/{verb}", post(verb))
        .route("/v1/services/{name}/deployments", get(history))
        .route("/v1/services/{name}/logs", get(logs))
        .route("/v1/deployments/{id}", get(deployment))
        .route("/v1/events", get(events))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), unix_auth));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(v1)
        .with_state(state)
        // Spec bodies are small; a 1 MiB cap keeps a bad client from filling memory.
        .layer(axum::extract::DefaultBodyLimit::max(1 << 20))
}

async fn unix_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
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
        return ApiError::Forbidden("peer credentials unavailable".into()).into_response();
    };
    if !state.policy.allows(&peer) {
        tracing::warn!(uid = peer.uid, gid = peer.gid, "refused a local API client");
        return ApiError::Forbidden(format!(
            "uid {} may not use berthd's socket: it must be root or in the socket_group",
            peer.uid
        ))
        .into_response();
    }
    req.extensions_mut()
        .insert(Actor(format!("uid:{}", peer.uid)));
    next.run(req).await
}

fn actor(req_actor: Option<axum::Extension<Actor>>) -> String {
    req_actor
        .map(|axum::Extension(a)| a.0)
        .unwrap_or_else(|| "unknown".into())
}

async fn node(State(s): State<AppState>) -> Json<NodeInfo> {
    Json(s.handle.snapshot().node.clone())
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
        current: snap.currents.get(&name).cloned(),
    }))
}

/// Validates a JSON value as one service with the operator-input parser, so
/// API bodies get the same strict checks (unknown fields, units) as files.
fn validate(label: &str, value: &serde_json::Value) -> Result<ServiceSpec, Vec<String>> {
    parse_service_json_value(label, value)
        .map_err(|errors| errors.0.iter().map(|e| e.to_string()).collect())
}

fn json_body(body: &Bytes) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))
}

async fn put_service(
    State(s): State<AppState>,
    Path(name): Path<String>,
    who: Option<axum::Extension<Actor>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let value = json_body(&body)?;
    let spec = validate("body", &value).map_err(|details| ApiError::InvalidSpec { details })?;
    if spec.name != name {
        return Err(ApiError::BadRequest(format!(
            "the body names service {} but the path names {name}",
            spec.name
        )));
    }
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
    Ok((status, Json(result.deployment)).into_response())
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
    body: Bytes,
) -> Result<Json<ApplyResponse>, ApiError> {
    let value = json_body(&body)?;
    let obj = value.as_object().ok_or_else(|| {
        ApiError::BadRequest("the body must be an object {services: [...], force}".into())
    })?;
    for key in obj.keys() {
        if key != "services" && key != "force" {
            return Err(ApiError::BadRequest(format!(
                "unknown field {key:?} in the apply request; known: services, force"
            )));
        }
    }
    let force = match obj.get("force") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::BadRequest("force must be true or false".into())),
    };
    let list = obj
        .get("services")
        .and_then(|v| v.as_array())
        .ok_or_else(|| ApiError::BadRequest("services must be a list of service specs".into()))?;
    let mut specs = Vec::new();
    let mut details = Vec::new();
    for (i, v) in list.iter().enumerate() {
        match validate(&format!("services[{i}]"), v) {
            Ok(spec) => specs.push(spec),
            Err(d) => details.extend(d),
        }
    }
    if !details.is_empty() {
        return Err(ApiError::InvalidSpec { details });
    }
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

async fn delete_service(
    State(s): State<AppState>,
    Path(name): Path<String>,
    who: Option<axum::Extension<Actor>>,
) -> Result<Json<VerbResponse>, ApiError> {
    Ok(Json(s.handle.verb(&name, Verb::Delete, &actor(who)).await?))
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
                "no verb {other:?}; verbs: stop, start, restart, hold, release, rollback"
            )));
        }
    };
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

async fn deployment(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Wait>,
) -> Result<Json<Deployment>, ApiError> {
    let d = match q.wait {
        None => s.handle.deployment(&id).await?,
        Some(w) => {
            let wait = berth_core::units::parse_duration(&w)
                .map_err(|e| ApiError::BadRequest(format!("wait: {e}")))?
                .min(MAX_WAIT);
            s.handle.wait_deployment(&id, wait).await?
        }
    };
    Ok(Json(d))
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

/// Prometheus text. Label values are bounded (statuses, not names... except
/// the service label, bounded by the number of services on the node).
async fn metrics(State(s): State<AppState>) -> Response {
    use std::fmt::Write;
    let snap = s.handle.snapshot();
    let n = &snap.node;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP berth_engine_reachable Whether the container engine answers."
    );
    let _ = writeln!(out, "# TYPE berth_engine_reachable gauge");
    let _ = writeln!(
        out,
        "berth_engine_reachable {}",
        u8::from(n.engine.reachable)
    );
    let _ = writeln!(
        out,
        "# HELP berth_services Services on this node by condition."
    );
    let _ = writeln!(out, "# TYPE berth_services gauge");
    for (cond, v) in [
        ("converged", n.summary.converged),
        ("in_progress", n.summary.in_progress),
        ("failing", n.summary.failing),
        ("held", n.summary.held),
        ("unreadable", n.summary.unreadable),
    ] {
        let _ = writeln!(out, "berth_services{{condition=\"{cond}\"}} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP berth_container_restarts Restarts the engine reports per service."
    );
    let _ = writeln!(out, "# TYPE berth_container_restarts gauge");
    for st in snap.services.values() {
        if let Some(c) = &st.container {
            let _ = writeln!(
                out,
                "berth_container_restarts{{service=\"{}\"}} {}",
                st.name, c.restart_count
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP berth_event_seq Sequence number of the newest event."
    );
    let _ = writeln!(out, "# TYPE berth_event_seq counter");
    let _ = writeln!(out, "berth_event_seq {}", n.event_seq);
    let mut resp = Response::new(Body::from(out));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
