//! berthd's API. Handlers only translate: extract, make one call on the
//! agent's [`Handle`], map the result. Errors become responses in one place
//! ([`ApiError`]), with an exhaustive match.

mod error;
mod routes;
mod unix;

pub use error::ApiError;
pub use routes::router;
pub use unix::{PeerPolicy, UnixPeer, bind_unix, serve_unix};

/// Who is calling, as records and events name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);
