//! http hooks POSTed on the one HTTP client ([`crate::http::HttpClient`]):
//! berthd's [`HookHttp`]. The client is the open one (a hook URL is the
//! operator's, or was let through by `[policy] allowed_hook_urls` when the
//! spec was pushed), with the system's CA roots plus `[upstream] ca_file`.
//! Errors name no URL (the agent shows the redacted one).

use std::time::Duration;

use berth_core::hook_http::{BODY_CAP, HookHttp, HookHttpError, HookRequest, HookResponse};
use bytes::Bytes;
use http::Method;

use crate::http::{HttpClient, RequestError};

/// berthd's client for http hooks.
#[derive(Clone)]
pub struct UpstreamHookHttp {
    client: HttpClient,
}

impl UpstreamHookHttp {
    pub fn new(client: HttpClient) -> UpstreamHookHttp {
        UpstreamHookHttp { client }
    }
}

/// What a request error means for an http hook.
fn hook_error(e: RequestError) -> HookHttpError {
    match e {
        RequestError::Timeout(after) => HookHttpError::NoAnswer(after),
        RequestError::Connect(_) | RequestError::Body(_) => {
            HookHttpError::Unreachable(e.to_string())
        }
        RequestError::BadUrl | RequestError::BadHeader(_) | RequestError::Refused(_) => {
            HookHttpError::Invalid(e.to_string())
        }
    }
}

impl HookHttp for UpstreamHookHttp {
    async fn post(&self, req: HookRequest) -> Result<HookResponse, HookHttpError> {
        let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        headers.extend(req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        // Never below a second: a last attempt with a sliver of time left
        // would fail for nothing.
        let timeout = req.timeout.max(Duration::from_secs(1));
        let resp = self
            .client
            .clone()
            .with_timeout(timeout)
            .send(
                Method::POST,
                &req.url,
                &headers,
                Some(Bytes::from(req.body)),
            )
            .await
            .map_err(hook_error)?;
        let body = &resp.body[..resp.body.len().min(BODY_CAP)];
        Ok(HookResponse {
            status: resp.status.as_u16(),
            body: String::from_utf8_lossy(body).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers each connection with the next of `answers`
    /// (raw HTTP) and keeps what it was sent.
    async fn server(answers: Vec<&'static str>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        tokio::spawn(async move {
            for answer in answers {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then as much body as content-length says.
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                kept.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&got).into_owned());
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        (format!("http://127.0.0.1:{}", addr.port()), seen)
    }

    fn req(url: String) -> HookRequest {
        HookRequest {
            url,
            headers: vec![("Berth-Hook-Phase".into(), "pre_update".into())],
            body: br#"{"service":"web"}"#.to_vec(),
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn posts_json_and_reads_the_status_and_body() {
        let (base, seen) = server(vec![
            "HTTP/1.1 423 Locked\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        ])
        .await;
        let http = UpstreamHookHttp::new(HttpClient::new(None).expect("client"));
        let url = format!("{base}/hook?token=s3cret");
        assert_eq!(
            http.post(req(url.clone())).await,
            Ok(HookResponse {
                status: 423,
                body: "busy".into()
            })
        );
        assert_eq!(http.post(req(url)).await.map(|r| r.status), Ok(200));
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 2);
        let first = seen[0].to_ascii_lowercase();
        assert!(first.starts_with("post /hook?token=s3cret "), "{first}");
        assert!(first.contains("content-type: application/json"), "{first}");
        assert!(first.contains("berth-hook-phase: pre_update"), "{first}");
        assert!(first.ends_with(r#"{"service":"web"}"#), "{first}");
    }

    #[tokio::test]
    async fn no_listener_is_unreachable_and_a_bad_url_is_final() {
        // A port nothing listens on: bound, then closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let http = UpstreamHookHttp::new(HttpClient::new(None).expect("client"));
        let url = format!("http://user:pw@127.0.0.1:{port}/hook?token=s3cret");
        match http.post(req(url)).await {
            Err(HookHttpError::Unreachable(why)) => {
                assert!(why.contains("connection failed"), "{why}");
                assert!(!why.contains("s3cret") && !why.contains("pw@"), "{why}");
            }
            other => panic!("expected unreachable, got {other:?}"),
        }
        assert!(matches!(
            http.post(req("ftp://h/x".into())).await,
            Err(HookHttpError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn a_silent_endpoint_is_no_answer_within_the_request_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // Accepts and reads, never answers.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let http = UpstreamHookHttp::new(HttpClient::new(None).expect("client"));
        let mut r = req(format!("http://127.0.0.1:{port}/hook"));
        r.timeout = Duration::from_secs(1);
        let started = std::time::Instant::now();
        assert_eq!(
            http.post(r).await,
            Err(HookHttpError::NoAnswer(Duration::from_secs(1)))
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
