//! The TCP API's setup (`[api]`): the tokens file, the TLS files, the
//! listen address. Everything here is checked before berthd starts; a
//! problem is one line naming the file, and berthd exits 78.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use berth_api::Tokens;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::config::Api;

/// What `serve_tcp` needs, all files read and checked.
pub struct TcpSetup {
    pub listen: SocketAddr,
    pub tokens: Tokens,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// mTLS: clients must present a certificate signed by `client_ca`.
    pub client_auth: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TcpSetupError {
    #[error("[api] listen {0:?}: expected ADDR:PORT, e.g. 127.0.0.1:7443 or [::]:7443")]
    Listen(String),
    #[error("[api] listen is set but tokens_file is not: the TCP API needs tokens")]
    NoTokensFile,
    #[error("[api] {key}: cannot read {path}: {source}")]
    Read {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(
        "[api] tokens_file {path}: {problem}; it holds secrets, so berthd refuses it (fix: chown {uid} {path} && chmod 600 {path})"
    )]
    Permissions {
        path: String,
        problem: String,
        uid: u32,
    },
    #[error("[api] tokens_file {0}")]
    Tokens(berth_api::TokensError),
    #[error("[api] {key} {path}: {message}")]
    Pem {
        key: &'static str,
        path: String,
        message: String,
    },
    #[error("[api] cert {cert} and key {key}: {message}")]
    Tls {
        cert: String,
        key: String,
        message: String,
    },
    #[error("[api] {0} needs both cert and key")]
    Incomplete(&'static str),
}

/// Reads and checks `[api]`; `None` when no TCP listener is configured.
pub fn prepare(api: &Api, own_uid: u32) -> Result<Option<TcpSetup>, TcpSetupError> {
    let Some(listen) = &api.listen else {
        return Ok(None);
    };
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| TcpSetupError::Listen(listen.clone()))?;
    let tokens_file = api
        .tokens_file
        .as_deref()
        .ok_or(TcpSetupError::NoTokensFile)?;
    let tokens = load_tokens(tokens_file, own_uid)?;
    let (tls, client_auth) = match (&api.cert, &api.key) {
        (None, None) if api.client_ca.is_some() => {
            return Err(TcpSetupError::Incomplete("client_ca"));
        }
        (None, None) => (None, false),
        (Some(cert), Some(key)) => {
            let config = tls_config(cert, key, api.client_ca.as_deref())?;
            (Some(Arc::new(config)), api.client_ca.is_some())
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(TcpSetupError::Incomplete("TLS"));
        }
    };
    Ok(Some(TcpSetup {
        listen,
        tokens,
        tls,
        client_auth,
    }))
}

/// The tokens file must be a regular file owned by berthd's uid and not
/// readable or writable by group or others.
pub fn load_tokens(path: &Path, own_uid: u32) -> Result<Tokens, TcpSetupError> {
    let shown = path.display().to_string();
    let read = |source| TcpSetupError::Read {
        key: "tokens_file",
        path: shown.clone(),
        source,
    };
    let perm = |problem: String| TcpSetupError::Permissions {
        path: shown.clone(),
        problem,
        uid: own_uid,
    };
    // Opened once; the checks and the read are on the same file.
    let file = std::fs::File::open(path).map_err(read)?;
    let meta = file.metadata().map_err(read)?;
    if !meta.is_file() {
        return Err(perm("is not a regular file".into()));
    }
    if meta.uid() != own_uid {
        return Err(perm(format!(
            "is owned by uid {}, not berthd's uid {own_uid}",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(perm(format!(
            "has mode {mode:04o}: group and others must have no access"
        )));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut &file, &mut text).map_err(read)?;
    Tokens::parse(&text, &shown).map_err(TcpSetupError::Tokens)
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, TcpSetupError> {
    std::fs::read(path).map_err(|source| TcpSetupError::Read {
        key,
        path: path.display().to_string(),
        source,
    })
}

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TcpSetupError> {
    let pem_err = |message: String| TcpSetupError::Pem {
        key,
        path: path.display().to_string(),
        message,
    };
    let bytes = read_file(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(pem_err("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// The rustls server config (ring provider; TLS 1.2 and 1.3); with
/// `client_ca`, clients must present a certificate it signed.
pub fn tls_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, TcpSetupError> {
    let chain = certs("cert", cert)?;
    let key_bytes = read_file("key", key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| TcpSetupError::Pem {
        key: "key",
        path: key.display().to_string(),
        message: format!("no PEM private key: {e}"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_err = |message: String| TcpSetupError::Tls {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        message,
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let ca_err = |message: String| TcpSetupError::Pem {
                key: "client_ca",
                path: ca.display().to_string(),
                message,
            };
            let mut roots = RootCertStore::empty();
            for c in certs("client_ca", ca)? {
                roots
                    .add(c)
                    .map_err(|e| ca_err(format!("not a usable CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ca_err(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, private)
        .map_err(|e| tls_err(format!("unusable as a pair: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn own_uid() -> u32 {
        std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0)
    }

    fn tokens_file(text: &str, mode: u32) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(f.path(), text).expect("write");
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).expect("chmod");
        f
    }

    #[test]
    fn tokens_file_permissions_are_checked() {
        let good = "admin 0123456789abcdef0123\n";
        let f = tokens_file(good, 0o600);
        assert_eq!(load_tokens(f.path(), own_uid()).expect("ok").len(), 1);
        for mode in [0o640, 0o604, 0o660, 0o644] {
            let f = tokens_file(good, mode);
            let e = load_tokens(f.path(), own_uid())
                .expect_err("mode")
                .to_string();
            assert!(
                e.contains("group and others") && e.contains("chmod 600"),
                "{e}"
            );
        }
        let e = load_tokens(f.path(), own_uid() + 1)
            .expect_err("owner")
            .to_string();
        assert!(e.contains("is owned by uid"), "{e}");
        let f = tokens_file("admin short\n", 0o600);
        let e = load_tokens(f.path(), own_uid())
            .expect_err("bad line")
            .to_string();
        assert!(e.contains(&format!("{}:1", f.path().display())), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn api_keys_are_checked_together() {
        let f = tokens_file("admin 0123456789abcdef0123\n", 0o600);
        let api = |listen: &str, tokens: bool| Api {
            listen: Some(listen.into()),
            tokens_file: tokens.then(|| f.path().to_path_buf()),
            ..Api::default()
        };
        assert!(prepare(&Api::default(), own_uid()).expect("ok").is_none());
        assert!(matches!(
            prepare(&api("localhost:80", true), own_uid()),
            Err(TcpSetupError::Listen(_))
        ));
        assert!(matches!(
            prepare(&api("127.0.0.1:7443", false), own_uid()),
            Err(TcpSetupError::NoTokensFile)
        ));
        let ok = prepare(&api("127.0.0.1:7443", true), own_uid())
            .expect("ok")
            .expect("some");
        assert!(ok.tls.is_none());
        let mut half = api("127.0.0.1:7443", true);
        half.cert = Some("/nonexistent.pem".into());
        assert!(matches!(
            prepare(&half, own_uid()),
            Err(TcpSetupError::Incomplete(_))
        ));
        half.key = Some("/nonexistent.key".into());
        let e = prepare(&half, own_uid())
            .err()
            .expect("missing file")
            .to_string();
        assert!(e.contains("/nonexistent.pem"), "{e}");
        let garbage = tokens_file("not pem", 0o600);
        half.cert = Some(garbage.path().to_path_buf());
        let e = prepare(&half, own_uid())
            .err()
            .expect("bad pem")
            .to_string();
        assert!(e.contains(&garbage.path().display().to_string()), "{e}");
    }
}
