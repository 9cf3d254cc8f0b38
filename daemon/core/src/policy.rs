//! Node policy (ARCHITECTURE.md §9, `[policy]`): what a spec pushed by an
//! orchestrator may ask of this node. Pure: paths are compared as text
//! (components, after removing `.` and resolving `..`), nothing is read, so
//! symlinks under an allowed path are the operator's to keep trustworthy.
//!
//! The local operator (Unix socket, spec_dir) is trusted; the API applies
//! this to specs arriving over TCP only.

use std::path::{Component, Path, PathBuf};

use crate::spec::{ImageSource, Network, ServiceSpec};

pub mod signal_hosts;

/// `[policy]` in `berthd.toml`. The default refuses everything optional.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodePolicy {
    pub allow_privileged: bool,
    pub allow_host_network: bool,
    /// Absolute host paths under which volumes, `build.context` and `load`
    /// may point. Empty: no host path at all.
    pub allowed_host_paths: Vec<String>,
    /// Hosts (`name` or `name:port`) signals may go to. Empty: any host
    /// but internal ones (loopback, link-local, cloud metadata; see
    /// [`signal_hosts`]), which only a listing allows.
    pub allowed_signal_hosts: Vec<String>,
}

/// One refusal: the rule (the `[policy]` key that forbids it) and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message} (node policy: {rule})")]
pub struct PolicyViolation {
    /// The `[policy]` key, e.g. `allow_privileged`, `allowed_host_paths`.
    pub rule: &'static str,
    /// The field path in the request, e.g. `services[0].volumes[1]`.
    pub field: String,
    pub message: String,
}

/// Capabilities that amount to privileged mode.
const PRIVILEGED_CAPS: &[&str] = &["ALL", "SYS_ADMIN", "CAP_SYS_ADMIN"];

impl NodePolicy {
    /// Every violation in `spec`; `field` prefixes the field paths (e.g.
    /// `services[0]`, or empty for a bare spec).
    pub fn check_spec(&self, spec: &ServiceSpec, field: &str) -> Vec<PolicyViolation> {
        let at = |f: &str| {
            if field.is_empty() {
                f.to_string()
            } else {
                format!("{field}.{f}")
            }
        };
        let mut out = Vec::new();
        if !self.allow_privileged {
            let mut refuse = |f: String, what: &str| {
                out.push(PolicyViolation {
                    rule: "allow_privileged",
                    field: f,
                    message: format!("{what} is not allowed on this node"),
                });
            };
            if spec.privileged {
                refuse(at("privileged"), "privileged mode");
            }
            if spec.pid.as_deref() == Some("host") {
                refuse(at("pid"), "the host's pid namespace");
            }
            if spec.ipc.as_deref() == Some("host") {
                refuse(at("ipc"), "the host's ipc namespace");
            }
            for (i, cap) in spec.cap_add.iter().enumerate() {
                if PRIVILEGED_CAPS
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(cap.trim()))
                {
                    refuse(at(&format!("cap_add[{i}]")), &format!("capability {cap}"));
                }
            }
            for (i, opt) in spec.security_opt.iter().enumerate() {
                if opt.contains("unconfined") {
                    refuse(at(&format!("security_opt[{i}]")), &format!("`{opt}`"));
                }
            }
        }
        if !self.allow_host_network && spec.network == Network::Host {
            out.push(PolicyViolation {
                rule: "allow_host_network",
                field: at("network"),
                message: "the host network is not allowed on this node".into(),
            });
        }
        for (i, v) in spec.volumes.iter().enumerate() {
            // Named volumes are the engine's, not host paths.
            if v.is_host_path() {
                self.check_host_path(&v.source, at(&format!("volumes[{i}]")), &mut out);
            }
        }
        match &spec.image {
            ImageSource::Ref(_) => {}
            ImageSource::Build { build } => {
                self.check_host_path(&build.context, at("image.build.context"), &mut out)
            }
            ImageSource::Load { load } => self.check_host_path(load, at("image.load"), &mut out),
        }
        for (i, c) in spec.config.iter().enumerate() {
            self.check_host_path(&c.source, at(&format!("config[{i}].source")), &mut out);
        }
        out
    }

    fn check_host_path(&self, path: &str, field: String, out: &mut Vec<PolicyViolation>) {
        if let Err(message) = self.host_path_allowed(path) {
            out.push(PolicyViolation {
                rule: "allowed_host_paths",
                field,
                message,
            });
        }
    }

    /// Whether `path` lies under one of `allowed_host_paths` (by components,
    /// after normalising). A relative path is refused: it would resolve
    /// against berthd's working directory.
    pub fn host_path_allowed(&self, path: &str) -> Result<(), String> {
        let Some(p) = normalize(path) else {
            return Err(format!(
                "host path `{path}` must be absolute to be checked against allowed_host_paths"
            ));
        };
        let ok = self
            .allowed_host_paths
            .iter()
            .filter_map(|a| normalize(a))
            .any(|allowed| p.starts_with(&allowed));
        if ok {
            Ok(())
        } else if self.allowed_host_paths.is_empty() {
            Err(format!(
                "host path `{path}` is not allowed: this node allows no host paths"
            ))
        } else {
            Err(format!(
                "host path `{}` is outside the allowed host paths ({})",
                p.display(),
                self.allowed_host_paths.join(", ")
            ))
        }
    }

    /// Whether an upstream signal may go to `url`: never to an internal
    /// target (loopback, link-local, cloud metadata, unspecified) unless
    /// `allowed_signal_hosts` lists its host; with `allowed_signal_hosts`
    /// non-empty, only to a listed host (or `host:port`, case-insensitive).
    /// See [`signal_hosts`] (and [`signal_hosts::check_resolved`] for
    /// what a name resolves to).
    pub fn check_signal_url(&self, url: &str, field: &str) -> Result<(), PolicyViolation> {
        signal_hosts::check_url(&self.allowed_signal_hosts, url, field)
    }
}

/// An absolute path with `.` removed and `..` resolved lexically (never above
/// `/`); `None` for a relative or empty path.
fn normalize(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Some(out)
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{BuildSpec, ConfigMount, OnChange, Volume};

    fn spec() -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            image: ImageSource::Ref("demo:1".into()),
            ..ServiceSpec::default()
        }
    }

    fn policy(paths: &[&str]) -> NodePolicy {
        NodePolicy {
            allowed_host_paths: paths.iter().map(|s| s.to_string()).collect(),
            ..NodePolicy::default()
        }
    }

    fn rules(v: &[PolicyViolation]) -> Vec<(&'static str, String)> {
        v.iter().map(|v| (v.rule, v.field.clone())).collect()
    }

    #[test]
    fn a_plain_spec_passes_the_strictest_policy() {
        assert!(NodePolicy::default().check_spec(&spec(), "").is_empty());
    }

    #[test]
    fn privileged_and_host_network_are_refused_unless_allowed() {
        type Edit = fn(&mut ServiceSpec);
        let cases: Vec<(&str, Edit, &str, &str)> = vec![
            (
                "privileged",
                |s| s.privileged = true,
                "allow_privileged",
                "privileged",
            ),
            (
                "pid host",
                |s| s.pid = Some("host".into()),
                "allow_privileged",
                "pid",
            ),
            (
                "ipc host",
                |s| s.ipc = Some("host".into()),
                "allow_privileged",
                "ipc",
            ),
            (
                "cap ALL",
                |s| s.cap_add = vec!["NET_ADMIN".into(), "all".into()],
                "allow_privileged",
                "cap_add[1]",
            ),
            (
                "cap SYS_ADMIN",
                |s| s.cap_add = vec!["SYS_ADMIN".into()],
                "allow_privileged",
                "cap_add[0]",
            ),
            (
                "seccomp unconfined",
                |s| s.security_opt = vec!["seccomp=unconfined".into()],
                "allow_privileged",
                "security_opt[0]",
            ),
            (
                "host network",
                |s| s.network = Network::Host,
                "allow_host_network",
                "network",
            ),
        ];
        for (what, edit, rule, field) in cases {
            let mut s = spec();
            edit(&mut s);
            let v = NodePolicy::default().check_spec(&s, "services[2]");
            assert_eq!(
                rules(&v),
                vec![(rule, format!("services[2].{field}"))],
                "{what}"
            );
            assert!(v[0].to_string().contains(rule), "{what}: {}", v[0]);
            let open = NodePolicy {
                allow_privileged: true,
                allow_host_network: true,
                ..NodePolicy::default()
            };
            assert!(open.check_spec(&s, "").is_empty(), "{what} when allowed");
        }
        // Harmless neighbours pass.
        let mut s = spec();
        s.network = Network::Named("backend".into());
        s.pid = Some("container:db".into());
        s.cap_add = vec!["NET_BIND_SERVICE".into()];
        s.security_opt = vec!["no-new-privileges".into()];
        assert!(NodePolicy::default().check_spec(&s, "").is_empty());
    }

    #[test]
    fn host_paths_are_compared_by_component_after_normalising() {
        let p = policy(&["/srv/berth", "/var/lib/app/"]);
        for (path, ok) in [
            ("/srv/berth", true),
            ("/srv/berth/", true),
            ("/srv/berth/web/data", true),
            ("/srv/berth/./web", true),
            ("/srv/berth/web/../db", true),
            ("/var/lib/app", true),
            ("/var/lib/app/x", true),
            ("/srv/berthx", false),
            ("/srv/berth-other/a", false),
            ("/srv/berth/../etc", false),
            ("/srv/berth/../../../../etc/shadow", false),
            ("/srv", false),
            ("/", false),
            ("/etc", false),
            ("relative/path", false),
            ("./srv/berth", false),
            ("", false),
        ] {
            assert_eq!(p.host_path_allowed(path).is_ok(), ok, "{path}");
        }
        assert!(policy(&[]).host_path_allowed("/srv/berth").is_err());
        // An allowed path written with `..` is normalised too.
        assert!(
            policy(&["/srv/x/../berth"])
                .host_path_allowed("/srv/berth/a")
                .is_ok()
        );
    }

    #[test]
    fn volumes_build_and_load_are_checked_named_volumes_are_not() {
        let p = policy(&["/srv/berth"]);
        let mut s = spec();
        s.volumes = vec![
            Volume::parse("/srv/berth/data:/data").expect("volume"),
            Volume::parse("appdata:/cache").expect("volume"),
            Volume::parse("/etc:/host-etc:ro").expect("volume"),
            Volume::parse("/srv/berth/../../etc:/x").expect("volume"),
        ];
        assert_eq!(
            rules(&p.check_spec(&s, "")),
            vec![
                ("allowed_host_paths", "volumes[2]".to_string()),
                ("allowed_host_paths", "volumes[3]".to_string()),
            ]
        );

        let mut s = spec();
        s.image = ImageSource::Build {
            build: BuildSpec {
                context: "/home/me/app".into(),
                dockerfile: None,
            },
        };
        assert_eq!(
            rules(&p.check_spec(&s, "")),
            vec![("allowed_host_paths", "image.build.context".to_string())]
        );
        s.image = ImageSource::Build {
            build: BuildSpec {
                context: "/srv/berth/app".into(),
                dockerfile: Some("../../Dockerfile".into()),
            },
        };
        assert!(p.check_spec(&s, "").is_empty());
        s.image = ImageSource::Load {
            load: "images/app.tar".into(),
        };
        assert_eq!(
            rules(&p.check_spec(&s, "")),
            vec![("allowed_host_paths", "image.load".to_string())]
        );
        s.image = ImageSource::Load {
            load: "/srv/berth/app.tar".into(),
        };
        assert!(p.check_spec(&s, "").is_empty());

        let mut s = spec();
        s.config = vec![
            ConfigMount {
                source: "/srv/berth/web/conf".into(),
                target: "/etc/web".into(),
                on_change: OnChange::Restart,
            },
            ConfigMount {
                source: "/etc/ssh".into(),
                target: "/etc/ssh".into(),
                on_change: OnChange::None,
            },
        ];
        assert_eq!(
            rules(&p.check_spec(&s, "services[0]")),
            vec![(
                "allowed_host_paths",
                "services[0].config[1].source".to_string()
            )]
        );
    }

    #[test]
    fn every_violation_is_reported() {
        let mut s = spec();
        s.privileged = true;
        s.network = Network::Host;
        s.volumes = vec![Volume::parse("/:/host").expect("volume")];
        let v = NodePolicy::default().check_spec(&s, "");
        assert_eq!(
            rules(&v),
            vec![
                ("allow_privileged", "privileged".to_string()),
                ("allow_host_network", "network".to_string()),
                ("allowed_host_paths", "volumes[0]".to_string()),
            ]
        );
    }

    #[test]
    fn signal_hosts() {
        let any = NodePolicy::default();
        assert!(any.check_signal_url("http://anything/x", "u").is_ok());
        let p = NodePolicy {
            allowed_signal_hosts: vec!["heat.example".into(), "10.0.0.1:8000".into()],
            ..NodePolicy::default()
        };
        for (url, ok) in [
            ("https://heat.example/v1/signal?sig=x", true),
            ("https://HEAT.example:443/x", true),
            ("http://user:pw@heat.example:8004/x", true),
            ("http://10.0.0.1:8000/x", true),
            ("http://10.0.0.1:8001/x", false),
            ("http://10.0.0.1/x", false),
            ("http://heat.example.evil/x", false),
            ("http://evil/x?h=heat.example", false),
            ("http://evil#@heat.example", false),
            ("http://[::1]:8000/x", false),
            ("not a url", false),
            ("http:///x", false),
            ("http://heat.example:notaport/x", false),
        ] {
            let r = p.check_signal_url(url, "deploy_signal_id");
            assert_eq!(r.is_ok(), ok, "{url}: {r:?}");
            if let Err(v) = r {
                assert_eq!(v.rule, "allowed_signal_hosts");
                assert_eq!(v.field, "deploy_signal_id");
            }
        }
        let v6 = NodePolicy {
            allowed_signal_hosts: vec!["::1".into()],
            ..NodePolicy::default()
        };
        assert!(v6.check_signal_url("http://[::1]:8000/x", "u").is_ok());
    }
}
