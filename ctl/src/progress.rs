//! A bar per service whose image berthd is pulling, while `apply` (or a
//! verb that waits) runs on a terminal: drawn on stderr from berthd's
//! `image_pull` events (`GET /v1/events?follow=true`), followed from before
//! the request is sent, since berthd pulls while it resolves an apply,
//! before it answers. Not on a terminal, or with `--json`, nothing is
//! followed and nothing is drawn: the output stays plain lines.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use berth_core::dto::NodeInfo;
use berth_core::event::{Event, EventKind};
use http_body_util::BodyExt;
use hyper::Method;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

use crate::client::Client;
use crate::sse;

/// The bars on screen, if any: stdout writes go around them.
static ACTIVE: Mutex<Option<MultiProgress>> = Mutex::new(None);

fn active() -> MutexGuard<'static, Option<MultiProgress>> {
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` (a write to stdout) with the bars, if any, taken off the screen
/// and drawn again after it.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let multi = active().clone();
    match multi {
        Some(m) => m.suspend(f),
        None => f(),
    }
}

/// What one `image_pull` event does to its service's bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BarUpdate {
    /// The pull goes on: the bar shows `message`, `position` of `length`
    /// bytes (0: not known yet).
    Progress {
        service: String,
        message: String,
        position: u64,
        length: u64,
    },
    /// The pull ended: the bar goes, and `line` (the event's summary)
    /// stays in its place.
    Done { service: String, line: String },
}

/// The update `kind` makes, when it is a pull of one of `services`.
pub fn bar_update(kind: &EventKind, services: &BTreeSet<String>) -> Option<BarUpdate> {
    let EventKind::ImagePull {
        service,
        reference,
        layers_done,
        layers_total,
        bytes_done,
        bytes_total,
        done,
        ..
    } = kind
    else {
        return None;
    };
    if !services.contains(service) {
        return None;
    }
    if *done {
        return Some(BarUpdate::Done {
            service: service.clone(),
            line: kind.summary(),
        });
    }
    // Nothing to count before the engine named a layer.
    let message = if *layers_total == 0 {
        format!("pulling {reference}")
    } else {
        format!("pulling {reference} ({layers_done}/{layers_total} layers)")
    };
    Some(BarUpdate::Progress {
        service: service.clone(),
        message,
        position: *bytes_done,
        length: *bytes_total,
    })
}

type Bars = Arc<Mutex<BTreeMap<String, ProgressBar>>>;

/// The bars of one command; they go when this is dropped.
pub struct PullBars {
    multi: MultiProgress,
    bars: Bars,
    task: tokio::task::JoinHandle<()>,
}

impl PullBars {
    /// Follows berthd's pulls of `services` when stdout and stderr are a
    /// terminal and the output is not `--json`; `None` otherwise, or when
    /// the events cannot be followed (the bars are only a help: the
    /// command goes on without them).
    pub async fn start(
        client: &Client,
        services: impl IntoIterator<Item = String>,
        json: bool,
    ) -> Option<PullBars> {
        if json || !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
            return None;
        }
        let services: BTreeSet<String> = services.into_iter().collect();
        // From now on: the pulls of this command, not those berthd keeps.
        let since = client.get::<NodeInfo>("/v1/node").await.ok()?.event_seq;
        let path = format!("/v1/events?since={since}&follow=true");
        let body = client
            .send_ok(Method::GET, &path, None)
            .await
            .ok()?
            .into_body();
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let bars: Bars = Arc::default();
        let task = tokio::spawn(follow(body, services, multi.clone(), bars.clone()));
        *active() = Some(multi.clone());
        Some(PullBars { multi, bars, task })
    }
}

impl Drop for PullBars {
    fn drop(&mut self) {
        self.task.abort();
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        for bar in std::mem::take(&mut *bars).into_values() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        *active() = None;
    }
}

/// Reads the event stream until it ends, drawing the pulls of `services`.
async fn follow(
    mut body: hyper::body::Incoming,
    services: BTreeSet<String>,
    multi: MultiProgress,
    bars: Bars,
) {
    let mut parser = sse::Parser::default();
    while let Some(Ok(frame)) = body.frame().await {
        let Some(data) = frame.data_ref() else {
            continue;
        };
        for msg in parser.push(data) {
            let Ok(event) = serde_json::from_str::<Event>(&msg.data) else {
                continue;
            };
            if let Some(update) = bar_update(&event.kind, &services) {
                draw(&multi, &bars, update);
            }
        }
    }
}

fn draw(multi: &MultiProgress, bars: &Bars, update: BarUpdate) {
    let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
    match update {
        BarUpdate::Progress {
            service,
            message,
            position,
            length,
        } => {
            // No colors (berthctl prints none); no bar before a size is known.
            let template = if length == 0 {
                "{prefix}: {msg}"
            } else {
                "{prefix}: {msg} [{wide_bar}] {decimal_bytes}/{decimal_total_bytes}"
            };
            let style = ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            match bars.get(&service) {
                Some(bar) => {
                    bar.set_style(style);
                    bar.set_message(message);
                    bar.set_length(length);
                    bar.set_position(position);
                }
                None => {
                    let bar = ProgressBar::new(length)
                        .with_style(style)
                        .with_prefix(service.clone())
                        .with_message(message)
                        .with_position(position)
                        .with_finish(ProgressFinish::AndClear);
                    bars.insert(service, multi.add(bar));
                }
            }
        }
        BarUpdate::Done { service, line } => {
            if let Some(bar) = bars.remove(&service) {
                bar.finish_and_clear();
                multi.remove(&bar);
            }
            // A line of its own on stderr, where the bar was.
            multi.suspend(|| {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(service: &str, done: bool) -> EventKind {
        EventKind::ImagePull {
            service: service.into(),
            reference: "127.0.0.1:5000/web:2".into(),
            layers_done: 3,
            layers_total: 7,
            bytes_done: 12_300_000,
            bytes_total: 80_100_000,
            done,
            failed: false,
        }
    }

    #[test]
    fn only_the_pulls_of_the_commands_services_move_bars() {
        let services: BTreeSet<String> = ["web".to_string()].into();
        assert_eq!(
            bar_update(&pull("web", false), &services),
            Some(BarUpdate::Progress {
                service: "web".into(),
                message: "pulling 127.0.0.1:5000/web:2 (3/7 layers)".into(),
                position: 12_300_000,
                length: 80_100_000,
            })
        );
        assert_eq!(
            bar_update(&pull("web", true), &services),
            Some(BarUpdate::Done {
                service: "web".into(),
                line: "web: pulled 127.0.0.1:5000/web:2 \u{2014} 3/7 layers, 12.3 MB / 80.1 MB"
                    .into(),
            })
        );
        assert_eq!(bar_update(&pull("api", false), &services), None);
        let other = EventKind::ServiceDeleted {
            service: "web".into(),
        };
        assert_eq!(bar_update(&other, &services), None);
    }
}
