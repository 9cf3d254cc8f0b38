//! A tiny HTTP/1.1 client for berthd's Unix socket: one connection per request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_core::dto::ErrorBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::error::{CliError, CliResult, ErrorKind};

pub const DEFAULT_SOCKET: &str = "/run/berth/berth.sock";

#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request; any status comes back (see [`Client::send_ok`]).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> CliResult<Response<Incoming>> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| {
            CliError::failed(format!(
                "cannot reach berthd at {}: {e} (is berthd running? set --socket or BERTH_SOCKET)",
                self.socket.display()
            ))
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| {
                CliError::failed(format!(
                    "cannot talk to berthd at {}: {e}",
                    self.socket.display()
                ))
            })?;
        tokio::spawn(async move {
            // The connection ends with the response (or the caller dropping it).
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, "berthd")
            .header(ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| CliError::failed(format!("cannot build the request {path}: {e}")))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| CliError::failed(format!("{method} {path}: berthd did not answer: {e}")))
    }

    /// Sends one request and turns a non-2xx answer into an error.
    pub async fn send_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> CliResult<Response<Incoming>> {
        let resp = self.send(method.clone(), path, body).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = read_body(resp, &method, path).await?;
        Err(api_error(status, &bytes))
    }

    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> CliResult<T> {
        let resp = self.send_ok(method.clone(), path, body).await?;
        let bytes = read_body(resp, &method, path).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            CliError::failed(format!(
                "{method} {path}: unexpected answer from berthd: {e}"
            ))
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> CliResult<T> {
        self.json(Method::GET, path, None).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> CliResult<T> {
        let body = serde_json::to_vec(body)
            .map_err(|e| CliError::failed(format!("cannot encode the request body: {e}")))?;
        self.json(Method::POST, path, Some(body)).await
    }

    /// Like [`Client::get`], but gives up after `limit` (a long-poll that
    /// the daemon should have answered by then).
    pub async fn get_within<T: DeserializeOwned>(
        &self,
        path: &str,
        limit: Duration,
    ) -> CliResult<T> {
        match tokio::time::timeout(limit, self.get(path)).await {
            Ok(r) => r,
            Err(_) => Err(CliError::failed(format!(
                "GET {path}: berthd did not answer within {}s",
                limit.as_secs()
            ))),
        }
    }
}

async fn read_body(resp: Response<Incoming>, method: &Method, path: &str) -> CliResult<Bytes> {
    Ok(resp
        .into_body()
        .collect()
        .await
        .map_err(|e| CliError::failed(format!("{method} {path}: reading the answer: {e}")))?
        .to_bytes())
}

/// An error answer: the API's [`ErrorBody`] when it sent one. 400, 409 and 422
/// are the operator's input (exit 2); anything else is a failure (exit 1).
pub fn api_error(status: StatusCode, body: &[u8]) -> CliError {
    let kind = match status.as_u16() {
        400 | 409 | 422 => ErrorKind::Usage,
        _ => ErrorKind::Failed,
    };
    let mut err = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) if !b.error.is_empty() => {
            let mut e = CliError::failed(b.error).with_details(b.details);
            if !b.kind.is_empty() {
                e.api_kind = Some(b.kind);
            }
            e
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                CliError::failed(format!("berthd answered {status}"))
            } else {
                CliError::failed(format!("berthd answered {status}: {text}"))
            }
        }
    };
    err.kind = kind;
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_maps_to_exit_codes() {
        let body = br#"{"kind":"conflict","error":"web is owned by spec_dir file /etc/x.yaml","details":[]}"#;
        let e = api_error(StatusCode::CONFLICT, body);
        assert_eq!(e.exit_code(), 2);
        assert_eq!(e.api_kind.as_deref(), Some("conflict"));
        assert_eq!(e.message, "web is owned by spec_dir file /etc/x.yaml");

        let e = api_error(
            StatusCode::NOT_FOUND,
            br#"{"kind":"not_found","error":"no service web"}"#,
        );
        assert_eq!(e.exit_code(), 1);

        let e = api_error(StatusCode::INTERNAL_SERVER_ERROR, b"boom");
        assert_eq!(e.exit_code(), 1);
        assert_eq!(e.message, "berthd answered 500 Internal Server Error: boom");

        let e = api_error(StatusCode::UNPROCESSABLE_ENTITY, b"");
        assert_eq!(e.exit_code(), 2);
    }
}
