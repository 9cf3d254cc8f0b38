//! berthd's API, on the local socket and on TCP. Handlers only translate: extract, make one call on the
//! agent's [`Handle`], map the result. Errors become responses in one place
//! ([`ApiError`]), with an exhaustive match.

mod accept;
mod auth;
mod error;
mod metrics;
mod routes;
mod tcp;
mod unix;
mod upstream;

pub use auth::{Authenticated, MIN_TOKEN_LEN, Role, Tokens, TokensError};
pub use error::ApiError;
pub use routes::TcpAccess;
pub use routes::{BODY_READ_TIMEOUT, MAX_BODY, OPENAPI, route_paths, router, tcp_router};
pub use tcp::{ConnLimits, TcpPeer, serve_tcp};
pub use tokio_rustls::{TlsAcceptor, rustls};
pub use unix::{PeerPolicy, UnixPeer, bind_unix, serve_unix};
pub use upstream::{BoxFuture, UpstreamApi, UpstreamError};

/// Who is calling, as records and events name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);
