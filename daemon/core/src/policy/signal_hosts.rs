//! Where signals may go (`[policy] allowed_signal_hosts`), and the targets
//! that are refused unless listed there.
//!
//! A signal URL comes from a pushed or pulled Heat document, so whoever can
//! push a document chooses where berthd sends a POST or PUT (with a
//! Keystone password, for `HEAT_SIGNAL`). Some targets are berthd's own
//! host or the cloud's, never an orchestrator's; those are *internal* and
//! refused unless `allowed_signal_hosts` lists the host (or `host:port`)
//! exactly as the URL writes it:
//!
//! - loopback: `127.0.0.0/8`, `::1`, `localhost` and `*.localhost`
//!   (RFC 6761), `localhost.localdomain`, `ip6-localhost`, `ip6-loopback`;
//! - link-local: `169.254.0.0/16`, `fe80::/10`;
//! - cloud metadata services: `169.254.169.254`, `169.254.170.2` (ECS),
//!   `fd00:ec2::254`, `100.100.100.200` (Alibaba), `192.0.0.192` (Oracle),
//!   and the names `metadata.google.internal`, `metadata.goog`,
//!   `metadata`, `instance-data`, `instance-data.ec2.internal`;
//! - unspecified: `0.0.0.0/8` (Linux connects `0.0.0.0` to itself), `::`.
//!
//! An address is classified after unwrapping IPv4 inside IPv6
//! (`::ffff:127.0.0.1`, and the deprecated `::127.0.0.1`), and a host that
//! is an IPv4 address in any form `inet_aton` reads (`127.1`,
//! `0x7f000001`, `2130706433`, `0177.0.0.1`) is read as that address.
//!
//! Names are checked here as written. What a name *resolves* to is checked
//! by the HTTP client that sends signals, right before it connects, with
//! [`check_resolved`]: a name that resolves to an internal address is
//! refused unless the name itself (or that address) is listed, so a DNS
//! answer that changes between this check and the connection (rebinding)
//! gains nothing. A listed name is trusted for whatever it resolves to:
//! listing it is the operator's statement that it is the orchestrator.
//!
//! With `allowed_signal_hosts` non-empty, every unlisted host is refused
//! as well, internal or not.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::PolicyViolation;

/// The `[policy]` key these rules answer to.
pub const RULE: &str = "allowed_signal_hosts";

/// Names that are this host.
const LOOPBACK_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "ip6-localhost",
    "ip6-loopback",
];

/// Names of cloud metadata services.
const METADATA_NAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Addresses of cloud metadata services (besides link-local ones).
const METADATA_V4: &[Ipv4Addr] = &[
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(192, 0, 0, 192),
];

/// AWS's IPv6 instance metadata address.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// Why a target is internal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Internal {
    Loopback,
    LinkLocal,
    Metadata,
    Unspecified,
}

impl Internal {
    pub fn describe(self) -> &'static str {
        match self {
            Internal::Loopback => "a loopback address (this host)",
            Internal::LinkLocal => "a link-local address",
            Internal::Metadata => "a cloud metadata service",
            Internal::Unspecified => "an unspecified address (this host)",
        }
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<Internal> {
    if METADATA_V4.contains(&ip) {
        Some(Internal::Metadata)
    } else if ip.is_loopback() {
        Some(Internal::Loopback)
    } else if ip.is_link_local() {
        Some(Internal::LinkLocal)
    } else if ip.octets()[0] == 0 {
        Some(Internal::Unspecified)
    } else {
        None
    }
}

/// Whether `ip` is internal, and why. IPv4 inside IPv6 (mapped
/// `::ffff:a.b.c.d`, or compatible `::a.b.c.d`) is judged as the IPv4
/// address.
pub fn internal_ip(ip: IpAddr) -> Option<Internal> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            if v6 == METADATA_V6 {
                return Some(Internal::Metadata);
            }
            if v6.is_loopback() {
                return Some(Internal::Loopback);
            }
            if v6.is_unspecified() {
                return Some(Internal::Unspecified);
            }
            if v6.segments()[0] & 0xffc0 == 0xfe80 {
                return Some(Internal::LinkLocal);
            }
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal_v4(v4);
            }
            // IPv4-compatible (deprecated): `::a.b.c.d`.
            let s = v6.segments();
            if s[..6].iter().all(|x| *x == 0) {
                return internal_v4(Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ));
            }
            None
        }
    }
}

/// An IPv4 address as `inet_aton` reads it: one to four parts, each
/// decimal, octal (`0` prefix) or hex (`0x`), the last filling the bytes
/// left. `None` for anything else.
fn inet_aton(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or(p.strip_prefix("0X")) {
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        if digits.is_empty() && radix != 16 {
            return None;
        }
        let n = if digits.is_empty() {
            0
        } else {
            u64::from_str_radix(digits, radix).ok()?
        };
        nums.push(n);
    }
    let (last, head) = nums.split_last()?;
    if head.iter().any(|n| *n > 255) {
        return None;
    }
    let rest_bits = 8 * (4 - head.len()) as u32;
    if *last >= 1u64 << rest_bits {
        return None;
    }
    let mut v: u64 = 0;
    for (i, n) in head.iter().enumerate() {
        v |= n << (24 - 8 * i as u32);
    }
    v |= last;
    Some(Ipv4Addr::from(u32::try_from(v).ok()?))
}

/// Whether the host of a URL (lowercased, without brackets) is internal,
/// by its name or as an address literal.
pub fn internal_host(host: &str) -> Option<Internal> {
    let host = host.trim_end_matches('.');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return internal_ip(ip);
    }
    if let Some(v4) = inet_aton(host) {
        return internal_v4(v4);
    }
    if LOOPBACK_NAMES.contains(&host) || host.ends_with(".localhost") {
        return Some(Internal::Loopback);
    }
    if METADATA_NAMES.contains(&host) {
        return Some(Internal::Metadata);
    }
    None
}

/// The lowercased host and the port (if written) of
/// `scheme://[user@]host[:port]/...`.
pub(crate) fn url_host(url: &str) -> Option<(String, Option<u16>)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = split_host_port(hostport)?;
    Some((host, port))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address,
/// lowercased; `None` when the port is not a number or the host is empty.
fn split_host_port(hostport: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        (h.to_string(), port)
    } else if hostport.parse::<Ipv6Addr>().is_ok() {
        (hostport.to_string(), None)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse().ok()?)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

/// Whether `host` (and `port` when given) is listed: an entry `host`
/// allows any port, `host:port` that port only.
fn listed(allowed: &[String], host: &str, port: Option<u16>) -> bool {
    let with_port = port.map(|p| format!("{host}:{p}"));
    allowed.iter().any(|a| {
        let a = a.trim().to_ascii_lowercase();
        a == host || with_port.as_deref() == Some(a.as_str())
    })
}

/// Whether `host` is listed with any port (for the resolved-address check,
/// which runs after the port was checked).
fn host_listed(allowed: &[String], host: &str) -> bool {
    allowed
        .iter()
        .any(|a| split_host_port(a.trim()).is_some_and(|(h, _)| h == host.to_ascii_lowercase()))
}

/// The check behind [`super::NodePolicy::check_signal_url`]: see the module
/// docs.
pub fn check_url(allowed: &[String], url: &str, field: &str) -> Result<(), PolicyViolation> {
    let refuse = |message: String| PolicyViolation {
        rule: RULE,
        field: field.to_string(),
        message,
    };
    let Some((host, port)) = url_host(url) else {
        return Err(refuse("the signal URL has no host".into()));
    };
    if listed(allowed, &host, port) {
        return Ok(());
    }
    if let Some(why) = internal_host(&host) {
        return Err(refuse(format!(
            "signals may not go to host {host}: it is {}; list it in allowed_signal_hosts to allow it",
            why.describe()
        )));
    }
    if allowed.is_empty() {
        return Ok(());
    }
    Err(refuse(format!(
        "signals may not go to host {host} (allowed: {})",
        allowed.join(", ")
    )))
}

/// The check right before connecting: `host` (as the URL wrote it)
/// resolved to `addr`. Refused when `addr` is internal, unless `host` or
/// `addr` is listed. The message names the host, the address and why.
pub fn check_resolved(allowed: &[String], host: &str, addr: IpAddr) -> Result<(), String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host_listed(allowed, host) || host_listed(allowed, &addr.to_string()) {
        return Ok(());
    }
    match internal_ip(addr) {
        None => Ok(()),
        Some(why) => Err(format!(
            "signals may not go to host {host}: it resolves to {addr}, {}; list it in allowed_signal_hosts to allow it (node policy: {RULE})",
            why.describe()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Vec<String> {
        Vec::new()
    }

    #[test]
    fn every_internal_class_is_refused_by_default() {
        for (url, class) in [
            ("http://127.0.0.1:8080/internal", Internal::Loopback),
            ("http://127.8.9.10/x", Internal::Loopback),
            ("http://[::1]:80/x", Internal::Loopback),
            ("http://localhost:9000/x", Internal::Loopback),
            ("http://LOCALHOST./x", Internal::Loopback),
            ("http://api.localhost/x", Internal::Loopback),
            ("http://ip6-localhost/x", Internal::Loopback),
            ("http://127.1/x", Internal::Loopback),
            ("http://2130706433/x", Internal::Loopback),
            ("http://0x7f000001/x", Internal::Loopback),
            ("http://0177.0.0.1/x", Internal::Loopback),
            ("http://[::ffff:127.0.0.1]/x", Internal::Loopback),
            ("http://[::ffff:7f00:1]/x", Internal::Loopback),
            ("http://[::127.0.0.1]/x", Internal::Loopback),
            ("http://169.254.1.1/x", Internal::LinkLocal),
            ("http://[fe80::1]/x", Internal::LinkLocal),
            ("http://[febf::1]/x", Internal::LinkLocal),
            ("http://[::ffff:169.254.3.4]/x", Internal::LinkLocal),
            (
                "http://169.254.169.254/latest/meta-data/",
                Internal::Metadata,
            ),
            ("http://[::ffff:169.254.169.254]/x", Internal::Metadata),
            ("http://[fd00:ec2::254]/x", Internal::Metadata),
            ("http://100.100.100.200/x", Internal::Metadata),
            ("http://metadata.google.internal/x", Internal::Metadata),
            ("http://Metadata.Google.Internal./x", Internal::Metadata),
            ("http://metadata/x", Internal::Metadata),
            ("http://instance-data/x", Internal::Metadata),
            ("http://0.0.0.0:8000/x", Internal::Unspecified),
            ("http://0/x", Internal::Unspecified),
            ("http://[::]:8000/x", Internal::Unspecified),
            ("http://user:pw@127.0.0.1/x", Internal::Loopback),
        ] {
            let (host, _) = url_host(url).expect("host");
            assert_eq!(internal_host(&host), Some(class), "{url}");
            let v = check_url(&none(), url, "deploy_signal_id").expect_err(url);
            assert_eq!(v.rule, "allowed_signal_hosts", "{url}");
            assert_eq!(v.field, "deploy_signal_id", "{url}");
            assert!(v.message.contains(&host), "names the host: {v}");
            assert!(v.message.contains(class.describe()), "names the class: {v}");
        }
    }

    #[test]
    fn ordinary_hosts_pass_with_an_empty_list() {
        for url in [
            "https://heat.example/v1/signal?sig=x",
            "http://10.0.0.1:8000/x",
            "http://192.168.24.1:8000/x",
            "http://172.16.0.1/x",
            "http://[2001:db8::1]/x",
            "http://[::ffff:10.0.0.1]/x",
            "http://localhostx/x",
            "http://metadata.example/x",
            "http://1.2.3.4.5/x",
            "http://128.0.0.1/x",
            "http://169.255.0.1/x",
        ] {
            assert!(check_url(&none(), url, "u").is_ok(), "{url}");
        }
        assert!(check_url(&none(), "not a url", "u").is_err());
        assert!(check_url(&none(), "http:///x", "u").is_err());
    }

    #[test]
    fn listing_a_host_allows_it_as_written() {
        let allowed = vec![
            "127.0.0.1".to_string(),
            "localhost:5000".to_string(),
            "::1".to_string(),
            "169.254.169.254".to_string(),
        ];
        for (url, ok) in [
            ("http://127.0.0.1:8004/x", true),
            ("http://localhost:5000/x", true),
            ("http://localhost:5001/x", false),
            ("http://[::1]:8000/x", true),
            ("http://169.254.169.254/x", true),
            // Another spelling of a listed address is not listed.
            ("http://127.1/x", false),
            ("http://[::ffff:127.0.0.1]/x", false),
            ("http://heat.example/x", false),
        ] {
            assert_eq!(check_url(&allowed, url, "u").is_ok(), ok, "{url}");
        }
    }

    #[test]
    fn resolved_addresses_are_checked_unless_the_name_or_address_is_listed() {
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:169.254.169.254".parse().expect("ip");
        let public: IpAddr = "203.0.113.7".parse().expect("ip");
        let e = check_resolved(&none(), "heat.example", lo).expect_err("loopback");
        assert!(
            e.contains("heat.example") && e.contains("127.0.0.1") && e.contains("loopback"),
            "{e}"
        );
        assert!(e.contains("allowed_signal_hosts"), "{e}");
        let e = check_resolved(&none(), "rebind.example", mapped).expect_err("metadata");
        assert!(e.contains("metadata"), "{e}");
        assert!(check_resolved(&none(), "heat.example", public).is_ok());
        let listed = vec!["heat.internal:8004".to_string()];
        assert!(check_resolved(&listed, "heat.internal", lo).is_ok());
        assert!(check_resolved(&listed, "other.internal", lo).is_err());
        let by_addr = vec!["127.0.0.1".to_string()];
        assert!(check_resolved(&by_addr, "anything.example", lo).is_ok());
    }

    #[test]
    fn inet_aton_forms() {
        for (s, ip) in [
            ("127.1", Some([127, 0, 0, 1])),
            ("127.0.1", Some([127, 0, 0, 1])),
            ("2130706433", Some([127, 0, 0, 1])),
            ("0x7f.1", Some([127, 0, 0, 1])),
            ("0", Some([0, 0, 0, 0])),
            ("1.2.3.4", Some([1, 2, 3, 4])),
            ("256.1.1.1", None),
            ("1.2.3.256", None),
            ("1.2.3.4.5", None),
            ("heat", None),
            ("08.1.1.1", None),
            ("", None),
        ] {
            assert_eq!(inet_aton(s), ip.map(Ipv4Addr::from), "{s}");
        }
    }
}
