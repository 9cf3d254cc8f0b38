//! `GET /metrics`: the node's numbers in Prometheus's text exposition
//! format (0.0.4). [`Metrics`] is what is measured, taken from the loop's
//! snapshot and the outbox; [`Metrics::render`] is pure, so the text is
//! tested without a router.
//!
//! Label values are bounded: conditions are fixed words, and the `service`
//! label is bounded by the number of services on the node.

use std::fmt::Write;

use berth_core::dto::{NodeInfo, OutboxSummary, ServiceStatus};

/// The media type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Everything `/metrics` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    pub engine_reachable: bool,
    /// Services by condition.
    pub converged: usize,
    pub in_progress: usize,
    pub failing: usize,
    pub held: usize,
    pub unreadable: usize,
    /// Restarts the engine reports, per service that has a container, in
    /// service order.
    pub restarts: Vec<(String, u64)>,
    /// The newest event's sequence number.
    pub event_seq: u64,
    /// The signal outbox; `None` when upstream is not running (its metrics
    /// are then left out rather than reported as zero).
    pub outbox: Option<OutboxSummary>,
}

impl Metrics {
    /// The numbers in the loop's snapshot (`node` and its services), and
    /// the outbox's when upstream runs.
    pub fn collect<'a>(
        node: &NodeInfo,
        services: impl IntoIterator<Item = &'a ServiceStatus>,
        outbox: Option<OutboxSummary>,
    ) -> Metrics {
        let s = &node.summary;
        Metrics {
            engine_reachable: node.engine.reachable,
            converged: s.converged,
            in_progress: s.in_progress,
            failing: s.failing,
            held: s.held,
            unreadable: s.unreadable,
            restarts: services
                .into_iter()
                .filter_map(|st| Some((st.name.clone(), st.container.as_ref()?.restart_count)))
                .collect(),
            event_seq: node.event_seq,
            outbox,
        }
    }

    /// The text exposition format: per metric a HELP and a TYPE line,
    /// then its samples.
    pub fn render(&self) -> String {
        let mut out = Text::default();
        out.family(
            "berth_engine_reachable",
            "Whether the container engine answers.",
            Type::Gauge,
        );
        out.sample(
            "berth_engine_reachable",
            &[],
            u8::from(self.engine_reachable),
        );
        out.family(
            "berth_services",
            "Services on this node by condition.",
            Type::Gauge,
        );
        for (condition, v) in [
            ("converged", self.converged),
            ("in_progress", self.in_progress),
            ("failing", self.failing),
            ("held", self.held),
            ("unreadable", self.unreadable),
        ] {
            out.sample("berth_services", &[("condition", condition)], v);
        }
        out.family(
            "berth_container_restarts",
            "Restarts the engine reports per service.",
            Type::Gauge,
        );
        for (service, v) in &self.restarts {
            out.sample("berth_container_restarts", &[("service", service)], v);
        }
        out.family(
            "berth_event_seq",
            "Sequence number of the newest event.",
            Type::Counter,
        );
        out.sample("berth_event_seq", &[], self.event_seq);
        if let Some(o) = &self.outbox {
            for (name, help, v) in [
                (
                    "berth_outbox_depth",
                    "Signals waiting to be delivered.",
                    o.depth as u64,
                ),
                (
                    "berth_outbox_dead",
                    "Signals refused for good (dead letters).",
                    o.dead as u64,
                ),
                (
                    "berth_outbox_oldest_age_seconds",
                    "Age of the oldest waiting signal.",
                    o.oldest_age_ms / 1000,
                ),
            ] {
                out.family(name, help, Type::Gauge);
                out.sample(name, &[], v);
            }
        }
        out.0
    }
}

#[derive(Clone, Copy)]
enum Type {
    Gauge,
    Counter,
}

/// The text being written. Writing to a `String` cannot fail, so the
/// `fmt::Result`s are dropped here, once.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, help: &str, kind: Type) {
        let kind = match kind {
            Type::Gauge => "gauge",
            Type::Counter => "counter",
        };
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{label}=\"{}\"", escape_label_value(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// A label value as the format wants it: `\`, `"` and line feeds escaped.
fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text: `\` and line feeds escaped (quotes are fine there).
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::dto::{ContainerStatus, EngineStatus, Summary};
    use berth_core::runtime::ContainerState;

    fn status(name: &str, restarts: Option<u64>) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            container: restarts.map(|restart_count| ContainerStatus {
                id: format!("id-{name}"),
                name: format!("t-{name}"),
                state: ContainerState::Running,
                health: None,
                restart_count,
                exit_code: None,
                started_at: None,
                spec_hash: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn every_metric_has_help_and_type_and_the_names_stay() {
        let node = NodeInfo {
            engine: EngineStatus {
                reachable: true,
                detail: String::new(),
            },
            summary: Summary {
                services: 4,
                converged: 2,
                in_progress: 1,
                failing: 1,
                held: 0,
                unreadable: 0,
            },
            event_seq: 42,
            ..Default::default()
        };
        let services = [
            status("api", Some(3)),
            status("job", None),
            status("web", Some(0)),
        ];
        let outbox = OutboxSummary {
            depth: 2,
            oldest_age_ms: 61_999,
            dead: 1,
            unreadable: 0,
        };
        let text = Metrics::collect(&node, &services, Some(outbox)).render();
        assert_eq!(
            text,
            "\
# HELP berth_engine_reachable Whether the container engine answers.
# TYPE berth_engine_reachable gauge
berth_engine_reachable 1
# HELP berth_services Services on this node by condition.
# TYPE berth_services gauge
berth_services{condition=\"converged\"} 2
berth_services{condition=\"in_progress\"} 1
berth_services{condition=\"failing\"} 1
berth_services{condition=\"held\"} 0
berth_services{condition=\"unreadable\"} 0
# HELP berth_container_restarts Restarts the engine reports per service.
# TYPE berth_container_restarts gauge
berth_container_restarts{service=\"api\"} 3
berth_container_restarts{service=\"web\"} 0
# HELP berth_event_seq Sequence number of the newest event.
# TYPE berth_event_seq counter
berth_event_seq 42
# HELP berth_outbox_depth Signals waiting to be delivered.
# TYPE berth_outbox_depth gauge
berth_outbox_depth 2
# HELP berth_outbox_dead Signals refused for good (dead letters).
# TYPE berth_outbox_dead gauge
berth_outbox_dead 1
# HELP berth_outbox_oldest_age_seconds Age of the oldest waiting signal.
# TYPE berth_outbox_oldest_age_seconds gauge
berth_outbox_oldest_age_seconds 61
"
        );
    }

    #[test]
    fn without_upstream_the_outbox_metrics_are_left_out_not_zero() {
        let text = Metrics::default().render();
        assert!(!text.contains("berth_outbox"), "{text}");
        assert!(text.contains("berth_engine_reachable 0\n"), "{text}");
        // A family with no samples still says what it is.
        assert!(
            text.contains("# TYPE berth_container_restarts gauge\n# HELP berth_event_seq"),
            "{text}"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let m = Metrics {
            restarts: vec![("a\"b\\c\nd".into(), 1)],
            ..Default::default()
        };
        let text = m.render();
        assert!(
            text.contains("berth_container_restarts{service=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
        // Every line is a comment or a sample: the line feed did not split one.
        for line in text.lines() {
            assert!(
                line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("berth_"),
                "{line:?}"
            );
        }
        assert_eq!(escape_help("one\\two\nthree"), "one\\\\two\\nthree");
    }
}
