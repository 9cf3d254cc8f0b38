//! The one HTTP(S) client: hyper 1 with rustls (ring provider), the
//! system's roots plus `[upstream] ca_file`, and a connect and a total
//! timeout on every request. Errors never carry a URL's query or user info
//! (signal URLs are signed): callers pass the redacted URL for messages.
//!
//! Signals use a *guarded* client ([`HttpClient::for_signals`]): a URL
//! whose host is an address, and every address a name resolves to, is
//! checked right before connecting with
//! [`berth_core::policy::signal_hosts::check_resolved`] (loopback,
//! link-local, cloud metadata and unspecified addresses are refused unless
//! `allowed_signal_hosts` lists the name or the address). Addresses that
//! fail are dropped from the answer; when none is left the request fails
//! with [`RequestError::Refused`], never having connected. The check runs
//! on the very answer the connection uses, so a DNS answer that changes
//! after the URL was checked (rebinding) is caught. Metadata pull and
//! reports use the unguarded client: their URLs are the operator's.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use berth_core::policy::signal_hosts;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Connecting may take this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole request (connect, send, read the body) may take this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses larger than this are refused (metadata included).
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read the CA file {path:?}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

/// Why a request got no response. The texts name no URL (the caller adds
/// the redacted one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("not a valid http(s) URL")]
    BadUrl,
    #[error("invalid header {0}")]
    BadHeader(String),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("reading the response failed: {0}")]
    Body(String),
    /// The guarded client would not connect there (the text names the
    /// host, the address, why, and the `[policy]` key).
    #[error("refused by node policy: {0}")]
    Refused(String),
}

/// A resolved (or literal) address the guard refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
struct TargetRefused(String);

/// The system resolver, its answer checked against the signal-host rules.
#[derive(Clone)]
struct GuardedResolver {
    inner: GaiResolver,
    allowed: Arc<Vec<String>>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allowed = self.allowed.clone();
        let host = name.as_str().to_string();
        let lookup = self.inner.call(name);
        Box::pin(async move {
            let addrs = lookup.await?;
            let (kept, refused) = guard_addrs(&allowed, &host, addrs);
            match refused {
                Some(why) if kept.is_empty() => Err(Box::new(TargetRefused(why)) as BoxError),
                _ => Ok(kept.into_iter()),
            }
        })
    }
}

/// The addresses of `host` the rules allow, and why the first refused one
/// was refused.
fn guard_addrs(
    allowed: &[String],
    host: &str,
    addrs: impl Iterator<Item = SocketAddr>,
) -> (Vec<SocketAddr>, Option<String>) {
    let mut kept = Vec::new();
    let mut refused = None;
    for a in addrs {
        match signal_hosts::check_resolved(allowed, host, a.ip()) {
            Ok(()) => kept.push(a),
            Err(why) => {
                tracing::warn!(host, address = %a.ip(), "{why}");
                refused.get_or_insert(why);
            }
        }
    }
    (kept, refused)
}

/// The connector: plain or guarded DNS under the same TLS.
#[derive(Clone)]
enum Inner {
    Open(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
    Guarded {
        client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
        allowed: Arc<Vec<String>>,
    },
}

/// A response, its body read in full.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct HttpClient {
    inner: Inner,
    timeout: Duration,
}

impl HttpClient {
    /// The system's CA roots (when readable) plus every certificate in
    /// `ca_file` (PEM); connects wherever a URL says.
    pub fn new(ca_file: Option<&Path>) -> Result<HttpClient, ClientError> {
        let tls = tls_config(ca_file)?;
        let http = HttpConnector::new();
        Ok(HttpClient {
            inner: Inner::Open(build(tls, http)),
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// As [`HttpClient::new`], guarded for signals (see the module docs):
    /// `allowed` is `[policy] allowed_signal_hosts`.
    pub fn for_signals(
        ca_file: Option<&Path>,
        allowed: &[String],
    ) -> Result<HttpClient, ClientError> {
        let tls = tls_config(ca_file)?;
        let allowed = Arc::new(allowed.to_vec());
        let http = HttpConnector::new_with_resolver(GuardedResolver {
            inner: GaiResolver::new(),
            allowed: allowed.clone(),
        });
        Ok(HttpClient {
            inner: Inner::Guarded {
                client: build(tls, http),
                allowed,
            },
            timeout: REQUEST_TIMEOUT,
        })
    }
}

/// The rustls client config: the system's roots plus `ca_file`.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "a system CA certificate could not be read");
    }
    let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for c in read_ca_file(path)? {
            roots.add(c).map_err(|e| ClientError::CaFile {
                path: path.display().to_string(),
                reason: format!("not a usable CA certificate: {e}"),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A pooled client over `http` (timeouts set here) and `tls`.
fn build<R>(
    tls: rustls::ClientConfig,
    mut http: HttpConnector<R>,
) -> Client<HttpsConnector<HttpConnector<R>>, Full<Bytes>>
where
    R: tower_service::Service<Name> + Clone + Send + Sync + 'static,
    R::Response: Iterator<Item = SocketAddr>,
    R::Error: Into<BoxError>,
    R::Future: Send,
{
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(2)
        .build(https)
}

impl HttpClient {
    /// Sends one request and reads the whole response, within the timeout.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Result<Response, RequestError> {
        let uri: Uri = url.parse().map_err(|_| RequestError::BadUrl)?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(RequestError::BadUrl);
        }
        let mut req = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| RequestError::BadHeader((*name).to_string()))?;
            let v = HeaderValue::from_str(value)
                .map_err(|_| RequestError::BadHeader((*name).to_string()))?;
            req = req.header(n, v);
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|_| RequestError::BadUrl)?;
        let fut = async {
            let sent = match &self.inner {
                Inner::Open(client) => client.request(req).await,
                Inner::Guarded { client, allowed } => {
                    // An address literal skips the resolver: checked here.
                    if let Some(host) = req.uri().host() {
                        let bare = host.trim_start_matches('[').trim_end_matches(']');
                        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
                            signal_hosts::check_resolved(allowed, bare, ip)
                                .map_err(RequestError::Refused)?;
                        }
                    }
                    client.request(req).await
                }
            };
            let resp = sent.map_err(|e| match refused(&e) {
                Some(why) => RequestError::Refused(why),
                None => RequestError::Connect(describe(&e)),
            })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| RequestError::Body(e.to_string()))?
                .to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(RequestError::Timeout(self.timeout)),
        }
    }
}

/// The guard's refusal, if that is why `e` happened.
fn refused(e: &hyper_util::client::legacy::Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<TargetRefused>() {
            return Some(r.0.clone());
        }
        cur = err.source();
    }
    None
}

/// The error and its causes, without the URL hyper may embed.
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut parts = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !text.is_empty() && !parts.contains(&text) {
            parts.push(text);
        }
        cur = err.source();
    }
    let joined = parts.join(": ");
    // hyper-util never puts the URL in these, but a query must never leak.
    match joined.find('?') {
        Some(i) => format!("{}?<redacted>", &joined[..i]),
        None => joined,
    }
}

/// The certificates of a PEM CA file (at least one).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let shown = path.display().to_string();
    let err = |reason: String| ClientError::CaFile {
        path: shown.clone(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(err("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// Host (and `:port` when given) of a URL, lowercased.
pub fn host_of(url: &str) -> Option<(String, Option<u16>)> {
    let uri: Uri = url.parse().ok()?;
    let host = uri.host()?.to_ascii_lowercase();
    Some((host, uri.port_u16()))
}

impl HttpClient {
    /// This client (the same pool) with `timeout` for a whole request
    /// instead of [`REQUEST_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> HttpClient {
        self.timeout = timeout;
        self
    }
}

/// Checks an `[upstream]` URL: http or https, with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(format!("scheme {other:?}: expected http or https")),
        None => return Err("no scheme: expected http:// or https://".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    Ok(())
}
