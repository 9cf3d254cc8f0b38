//! The client trusts `[upstream] ca_file` on top of the system roots, and
//! refuses a server it cannot verify.

use std::sync::Arc;

use berth_upstream::http::HttpClient;
use http::Method;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
    Pki {
        ca_pem: ca.pem(),
        cert: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// One HTTPS server on 127.0.0.1 answering every request 200 "ok".
async fn serve(p: &Pki) -> std::net::SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![p.cert.clone()], p.key.clone_key())
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn ca_file_is_trusted_and_an_unknown_ca_is_not() {
    let p = pki();
    let dir = tempfile::tempdir().expect("tmp");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &p.ca_pem).expect("write ca");
    let addr = serve(&p).await;
    let url = format!("https://{addr}/metadata");

    let trusting = HttpClient::new(Some(&ca)).expect("client");
    let r = trusting
        .send(Method::GET, &url, &[], None)
        .await
        .expect("verified");
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"ok");

    let plain = HttpClient::new(None).expect("client");
    assert!(plain.send(Method::GET, &url, &[], None).await.is_err());

    std::fs::write(&ca, "not pem").expect("write");
    assert!(HttpClient::new(Some(&ca)).is_err());
}
