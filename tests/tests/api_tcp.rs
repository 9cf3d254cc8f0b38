//! The TCP API against a real berthd: tokens, TLS, mTLS, the node policy,
//! and the config checks that keep berthd from starting with unsafe files.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_tests::api::{Reply, send, tcp_node as tcp_node_with, write_private};
use berth_tests::node::TestNode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};

const ADMIN: &str = "admin-token-for-the-tcp-tests-0001";
const READ: &str = "read-token-for-the-tcp-tests-00001";

/// A node with `[api]` on a free port and the two test tokens (mode 0600).
fn tcp_node(hint: &str, extra_api: &str, policy: &str) -> (TestNode, SocketAddr) {
    tcp_node_with(
        hint,
        &format!("# test tokens\nadmin {ADMIN}\n\nread {READ}\n"),
        &format!("{extra_api}\n{policy}"),
    )
}

/// One HTTP/1.1 request on a fresh connection (plain, or TLS with `tls`).
async fn request(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<Reply, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    match tls {
        None => send(tcp, method, path, token, body).await,
        Some(config) => {
            let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            send(stream, method, path, token, body).await
        }
    }
}

async fn plain(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    request(addr, None, method, path, token, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

#[tokio::test]
async fn tokens_roles_and_the_node_policy() {
    berth_prereq::require!(DemoImage);
    let (mut node, addr) = tcp_node(
        "tcpauth",
        "",
        "[policy]\nallowed_host_paths = [\"/srv/berth\"]\n",
    );
    node.start();

    let r = plain(addr, "GET", "/healthz", None, None).await;
    assert_eq!((r.status, r.body), (200, json!("ok")));
    for token in [None, Some("wrong-token-wrong-token-wrong")] {
        for path in ["/v1/services", "/metrics", "/v1/node"] {
            let r = plain(addr, "GET", path, token, None).await;
            assert_eq!(r.status, 401, "{path} with {token:?}: {}", r.body);
            assert_eq!(r.body["kind"], "unauthorized");
            let challenge = r
                .headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "{challenge:?}");
        }
    }
    for token in [READ, ADMIN] {
        let r = plain(addr, "GET", "/v1/services", Some(token), None).await;
        assert_eq!((r.status, r.body), (200, json!([])));
        let r = plain(addr, "GET", "/metrics", Some(token), None).await;
        assert_eq!(r.status, 200);
        assert!(
            r.body
                .as_str()
                .is_some_and(|m| m.contains("berth_event_seq")),
            "{}",
            r.body
        );
    }

    let spec = json!({"name": "web", "image": "berth-demo:latest", "state": "stopped"});
    let r = plain(
        addr,
        "PUT",
        "/v1/services/web",
        Some(READ),
        Some(spec.clone()),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["kind"], "forbidden");
    let r = plain(addr, "POST", "/v1/services/web/restart", Some(READ), None).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = plain(addr, "PUT", "/v1/services/web", Some(ADMIN), Some(spec)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let actor = r.body["actor"].as_str().unwrap_or_default().to_string();
    assert!(actor.starts_with("token:admin:"), "{actor}");
    assert!(!actor.contains(ADMIN));
    // The record and the event name the token, never the token itself.
    let shown = node.ctl_json(&["show", "web"]);
    assert_eq!(shown["current"]["actor"], actor.as_str());
    assert!(!node.logs().contains(ADMIN), "a token reached the log");

    // The node policy: a privileged spec over TCP is refused, rule and field named.
    let root = json!({"name": "root", "image": "berth-demo:latest", "privileged": true, "state": "stopped"});
    let r = plain(
        addr,
        "PUT",
        "/v1/services/root",
        Some(ADMIN),
        Some(root.clone()),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        (
            r.body["kind"].as_str(),
            r.body["rule"].as_str(),
            r.body["field"].as_str()
        ),
        (Some("policy"), Some("allow_privileged"), Some("privileged")),
        "{}",
        r.body
    );
    let apply = json!({"services": [{"name": "data", "image": "berth-demo:latest", "volumes": ["/srv/berth/../../etc:/x"]}]});
    let r = plain(
        addr,
        "POST",
        "/v1/apply?dry_run=true",
        Some(ADMIN),
        Some(apply),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["rule"], "allowed_host_paths");
    assert_eq!(r.body["field"], "services[0].volumes[0]");
    let r = plain(addr, "GET", "/v1/services/root", Some(READ), None).await;
    assert_eq!(r.status, 404, "nothing was applied: {}", r.body);
    // The local operator is trusted: the same spec over the Unix socket (a dry run).
    let file = node.spec_file("root.json", &root.to_string());
    let diff = node.ctl_json(&["diff", &file.display().to_string()]);
    assert_eq!(diff["results"][0]["change"], "created", "{diff}");
}

/// The `daemon` events whose message starts with `prefix`.
fn daemon_events(node: &TestNode, prefix: &str) -> Vec<String> {
    let events = node.ctl_json(&["events"]);
    events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "daemon")
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Polls `f` for up to 20 s.
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 20 s");
}

#[tokio::test]
async fn sighup_rotates_tokens_and_policy_and_names_what_waits_for_a_restart() {
    berth_prereq::require!(DemoImage);
    const NEW: &str = "rotated-admin-token-for-the-tcp-tests";
    let (mut node, addr) = tcp_node("tcphup", "", "");
    node.start();
    let pid = node.pid();
    let root =
        json!({"services": [{"name": "root", "image": "berth-demo:latest", "privileged": true}]});
    let r = plain(
        addr,
        "POST",
        "/v1/apply?dry_run=true",
        Some(ADMIN),
        Some(root.clone()),
    )
    .await;
    assert_eq!(
        r.status, 403,
        "the default policy refuses privileged: {}",
        r.body
    );

    // Rotate: the old tokens go, a new admin token comes, privileged is
    // allowed, and a key that needs a restart changes too.
    let tokens = node.dir().join("tokens");
    write_private(&tokens, &format!("admin {NEW}\n"));
    node.set_config(&format!(
        "history_limit = 7\n[api]\nlisten = \"{addr}\"\ntokens_file = \"{}\"\n[policy]\nallow_privileged = true\n",
        tokens.display()
    ));
    node.hup();
    eventually("the old token refused", async || {
        plain(addr, "GET", "/v1/services", Some(ADMIN), None)
            .await
            .status
            == 401
    })
    .await;
    let r = plain(addr, "GET", "/v1/services", Some(NEW), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = plain(
        addr,
        "POST",
        "/v1/apply?dry_run=true",
        Some(NEW),
        Some(root),
    )
    .await;
    assert_eq!(
        r.status, 200,
        "[policy] allow_privileged took effect: {}",
        r.body
    );
    assert_eq!(node.pid(), pid, "berthd did not restart");
    let reloads = daemon_events(&node, "config reloaded");
    assert_eq!(reloads.len(), 1, "{reloads:?}");
    let m = &reloads[0];
    assert!(m.contains("[api] 1 token(s), plain HTTP"), "{m}");
    assert!(m.contains("[policy]"), "{m}");
    assert!(
        m.contains("only when berthd restarts: history_limit"),
        "{m}"
    );
    assert!(
        !m.contains(NEW) && !node.logs().contains(NEW),
        "a token leaked: {m}"
    );

    // A tokens file that became unsafe is refused: the running tokens stay.
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    node.hup();
    let mut failed = Vec::new();
    eventually("a reload that keeps the tokens", async || {
        failed = daemon_events(&node, "config reloaded");
        failed.len() == 2
    })
    .await;
    assert!(
        failed[1].contains("kept running as before") && failed[1].contains("tokens_file"),
        "{}",
        failed[1]
    );
    let r = plain(addr, "GET", "/v1/services", Some(NEW), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(node.pid(), pid);
}

#[tokio::test]
async fn unsafe_or_broken_api_files_stop_berthd_with_exit_78() {
    // Group-readable tokens file.
    let (mut node, _) = tcp_node("tcpperm", "", "");
    let tokens = node.dir().join("tokens");
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let (status, out) = node.start_expecting_exit();
    assert_eq!(status.code(), Some(78), "{out}");
    assert!(
        out.contains(&tokens.display().to_string()) && out.contains("0640"),
        "{out}"
    );
    assert_eq!(out.trim().lines().count(), 1, "one line: {out}");

    // A bad line names file:line.
    let (mut node, _) = tcp_node("tcpline", "", "");
    let tokens = node.dir().join("tokens");
    write_private(
        &tokens,
        "admin 0123456789abcdef0123\nwrite 0123456789abcdef0124\n",
    );
    let (status, out) = node.start_expecting_exit();
    assert_eq!(status.code(), Some(78), "{out}");
    assert!(out.contains(&format!("{}:2", tokens.display())), "{out}");

    // A certificate file that is not PEM names the file.
    let (node, _) = tcp_node("tcpcert", "", "");
    let cert = node.dir().join("cert.pem");
    std::fs::write(&cert, "not a certificate").expect("write");
    let mut node = node.with_config(&format!(
        "cert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        cert.display()
    ));
    let (status, out) = node.start_expecting_exit();
    assert_eq!(status.code(), Some(78), "{out}");
    assert!(out.contains(&cert.display().to_string()), "{out}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: String,
    client_key: String,
    ca_pem: String,
}

fn pki(dir: &Path) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "berth test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).expect("ca");

    let server_key = KeyPair::generate().expect("server key");
    let mut sp = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("server params");
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = sp.signed_by(&server_key, &ca, &ca_key).expect("server");

    let client_key = KeyPair::generate().expect("client key");
    let mut cp = CertificateParams::new(Vec::<String>::new()).expect("client params");
    cp.distinguished_name
        .push(DnType::CommonName, "orchestrator");
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = cp.signed_by(&client_key, &ca, &ca_key).expect("client");

    let p = Pki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
        ca_pem: ca.pem(),
    };
    std::fs::write(&p.ca, ca.pem()).expect("write ca");
    std::fs::write(&p.server_cert, server.pem()).expect("write cert");
    write_private(&p.server_key, &server_key.serialize_pem());
    p
}

fn client_config(pki: &Pki, with_cert: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).expect("ca der"))
        .expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = if with_cert {
        let chain = vec![CertificateDer::from_pem_slice(pki.client_cert.as_bytes()).expect("der")];
        let key = PrivateKeyDer::from_pem_slice(pki.client_key.as_bytes()).expect("key");
        builder
            .with_client_auth_cert(chain, key)
            .expect("client auth")
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(config)
}

#[tokio::test]
async fn tls_serves_the_api_and_plain_http_gets_nothing() {
    berth_prereq::require!(DemoImage);
    let dir = tempfile::tempdir().expect("tmp");
    let pki = pki(dir.path());
    let (mut node, addr) = tcp_node(
        "tcptls",
        &format!(
            "cert = \"{}\"\nkey = \"{}\"\n",
            pki.server_cert.display(),
            pki.server_key.display()
        ),
        "",
    );
    node.start();
    let tls = Some(client_config(&pki, false));
    let r = request(addr, tls.clone(), "GET", "/v1/node", Some(READ), None)
        .await
        .expect("TLS request");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["node_id"], node.id.as_str());
    let r = request(addr, tls, "GET", "/v1/node", None, None)
        .await
        .expect("TLS request");
    assert_eq!(r.status, 401);
    assert!(
        request(addr, None, "GET", "/healthz", None, None)
            .await
            .is_err(),
        "plain HTTP on the TLS port must not be answered"
    );

    // Rotation: a new CA and certificate at the same paths, then SIGHUP.
    let rotated = self::pki(dir.path());
    node.hup();
    let new_tls = Some(client_config(&rotated, false));
    eventually("the new certificate served", async || {
        request(addr, new_tls.clone(), "GET", "/healthz", None, None)
            .await
            .is_ok()
    })
    .await;
    let old = request(
        addr,
        Some(client_config(&pki, false)),
        "GET",
        "/healthz",
        None,
        None,
    )
    .await;
    assert!(old.is_err(), "the old CA still verifies the server");
}

#[tokio::test]
async fn mtls_needs_a_client_certificate_and_still_a_token() {
    berth_prereq::require!(DemoImage);
    let dir = tempfile::tempdir().expect("tmp");
    let pki = pki(dir.path());
    let (mut node, addr) = tcp_node(
        "tcpmtls",
        &format!(
            "cert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
            pki.server_cert.display(),
            pki.server_key.display(),
            pki.ca.display()
        ),
        "",
    );
    node.start();
    // No client certificate: the handshake (or the first request) fails.
    let r = request(
        addr,
        Some(client_config(&pki, false)),
        "GET",
        "/healthz",
        None,
        None,
    )
    .await;
    assert!(r.is_err(), "a client without a certificate was answered");
    let with_cert = Some(client_config(&pki, true));
    let r = request(addr, with_cert.clone(), "GET", "/v1/services", None, None)
        .await
        .expect("mTLS request");
    assert_eq!(r.status, 401, "a certificate alone is not enough");
    let r = request(addr, with_cert, "GET", "/v1/services", Some(ADMIN), None)
        .await
        .expect("mTLS request");
    assert_eq!((r.status, r.body), (200, json!([])));
}

/// A client that sends half a request is cut off (header read timeout),
/// and one that sends too much body is refused; berthd keeps serving.
#[tokio::test]
async fn slow_or_oversized_requests_are_bounded() {
    berth_prereq::require!(DemoImage);
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut node, addr) = tcp_node("tcpslow", "", "");
    node.start();
    // Headers that never end, on TCP and on the local socket alike.
    async fn cut_off<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, which: &str) {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(30), s.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "{which}: the connection was still open after 30s"
        );
        // TCP: the pre-authentication deadline (5 s from accept) comes
        // first; the local socket: the header read timeout (10 s).
        assert!(
            started.elapsed() >= std::time::Duration::from_secs(3),
            "{which}: cut too early: {:?}",
            started.elapsed()
        );
    }
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let unix = tokio::net::UnixStream::connect(node.socket())
        .await
        .expect("connect to the socket");
    tokio::join!(cut_off(tcp, "TCP"), cut_off(unix, "the local socket"));

    let big = Value::String("x".repeat(2 << 20));
    let r = request(addr, None, "POST", "/v1/apply", Some(ADMIN), Some(big)).await;
    // Either the 413 arrives or the connection is closed mid-upload.
    if let Ok(r) = r {
        assert_eq!(r.status, 413, "{}", r.body);
        assert_eq!(r.body["kind"], "payload_too_large");
    }
    let r = plain(addr, "GET", "/healthz", None, None).await;
    assert_eq!(r.status, 200);
}
