//! [`FakeHookHttp`]: an in-memory [`HookHttp`] for the agent's tests. Tests
//! script its answers (a status and body, an error, after a delay), and see
//! every request it was sent.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_core::hook_http::{HookHttp, HookHttpError, HookRequest, HookResponse};

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct FakeAnswer {
    /// How long the endpoint takes to answer; longer than the request's
    /// timeout gives [`HookHttpError::NoAnswer`] once the timeout passed.
    pub delay: Duration,
    pub result: Result<HookResponse, HookHttpError>,
}

impl FakeAnswer {
    /// `status` with an empty body, at once.
    pub fn status(status: u16) -> FakeAnswer {
        FakeAnswer::body(status, "")
    }
    /// `status` with `body`, at once.
    pub fn body(status: u16, body: &str) -> FakeAnswer {
        FakeAnswer {
            delay: Duration::ZERO,
            result: Ok(HookResponse {
                status,
                body: body.to_string(),
            }),
        }
    }
    /// No answer: this error, at once.
    pub fn error(e: HookHttpError) -> FakeAnswer {
        FakeAnswer {
            delay: Duration::ZERO,
            result: Err(e),
        }
    }
    /// The same answer after `delay`.
    pub fn after(mut self, delay: Duration) -> FakeAnswer {
        self.delay = delay;
        self
    }
}

struct Inner {
    script: VecDeque<FakeAnswer>,
    /// Answered once the script is used up.
    otherwise: FakeAnswer,
    requests: Vec<HookRequest>,
}

/// An in-memory http hook endpoint (every URL is the same endpoint).
/// Clones share state. Until told otherwise it answers every request
/// with a connection error.
#[derive(Clone)]
pub struct FakeHookHttp {
    inner: Arc<Mutex<Inner>>,
}

impl Default for FakeHookHttp {
    fn default() -> FakeHookHttp {
        FakeHookHttp {
            inner: Arc::new(Mutex::new(Inner {
                script: VecDeque::new(),
                otherwise: FakeAnswer::error(HookHttpError::Unreachable(
                    "connection failed: the fake endpoint has no answer scripted".into(),
                )),
                requests: Vec::new(),
            })),
        }
    }
}

impl FakeHookHttp {
    pub fn new() -> FakeHookHttp {
        FakeHookHttp::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next request gets `answer` (queued after earlier ones).
    pub fn then(&self, answer: FakeAnswer) -> &FakeHookHttp {
        self.lock().script.push_back(answer);
        self
    }

    /// Every request once the queued answers are used up gets `answer`.
    pub fn always(&self, answer: FakeAnswer) -> &FakeHookHttp {
        self.lock().otherwise = answer;
        self
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<HookRequest> {
        self.lock().requests.clone()
    }
}

impl HookHttp for FakeHookHttp {
    async fn post(&self, req: HookRequest) -> Result<HookResponse, HookHttpError> {
        let timeout = req.timeout;
        let answer = {
            let mut inner = self.lock();
            inner.requests.push(req);
            match inner.script.pop_front() {
                Some(a) => a,
                None => inner.otherwise.clone(),
            }
        };
        if answer.delay > timeout {
            tokio::time::sleep(timeout).await;
            return Err(HookHttpError::NoAnswer(timeout));
        }
        if !answer.delay.is_zero() {
            tokio::time::sleep(answer.delay).await;
        }
        answer.result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(timeout: Duration) -> HookRequest {
        HookRequest {
            url: "http://h/hook".into(),
            headers: vec![],
            body: b"{}".to_vec(),
            timeout,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answers_in_order_then_the_fallback() {
        let http = FakeHookHttp::new();
        http.then(FakeAnswer::status(423))
            .then(FakeAnswer::body(200, "ok"));
        let t = Duration::from_secs(5);
        assert_eq!(http.post(req(t)).await.map(|r| r.status), Ok(423));
        assert_eq!(
            http.post(req(t)).await,
            Ok(HookResponse {
                status: 200,
                body: "ok".into()
            })
        );
        assert!(matches!(
            http.post(req(t)).await,
            Err(HookHttpError::Unreachable(_))
        ));
        http.always(FakeAnswer::status(204));
        assert_eq!(http.post(req(t)).await.map(|r| r.status), Ok(204));
        assert_eq!(http.requests().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_past_the_timeout_is_no_answer() {
        let http = FakeHookHttp::new();
        http.then(FakeAnswer::status(200).after(Duration::from_secs(60)));
        let start = tokio::time::Instant::now();
        let t = Duration::from_secs(2);
        assert_eq!(http.post(req(t)).await, Err(HookHttpError::NoAnswer(t)));
        assert_eq!(start.elapsed(), t);
    }
}
