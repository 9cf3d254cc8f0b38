//! berthd's TCP API from a test: a node listening on a free loopback port
//! with a tokens file, and one request per fresh connection.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::node::TestNode;

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Writes `text` to `path` with mode 0600, as berthd wants its secrets.
pub fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// A node with `[api]` on a free loopback port, `tokens` as its tokens file
/// (mode 0600), and `extra` after the `[api]` keys (more `[api]` keys, or
/// other tables such as `[policy]`).
pub fn tcp_node(hint: &str, tokens: &str, extra: &str) -> (TestNode, SocketAddr) {
    let node = TestNode::new(hint);
    let path = node.dir().join("tokens");
    write_private(&path, tokens);
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let node = node.with_config(&format!(
        "[api]\nlisten = \"{addr}\"\ntokens_file = \"{}\"\n{extra}",
        path.display()
    ));
    (node, addr)
}

/// An answer: status, headers, and the body as JSON (or as a JSON string
/// when it is not JSON).
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Value,
}

/// One HTTP/1.1 request over `io` (a fresh connection, plain or TLS),
/// with `Authorization: Bearer TOKEN` when a token is given.
pub async fn send<S>(
    io: S,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<Reply, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("http handshake: {e}"))?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// [`send`] on a fresh plain TCP connection to `addr`.
pub async fn send_plain(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<Reply, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    send(tcp, method, path, token, body).await
}
