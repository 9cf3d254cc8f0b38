//! Registry credentials from berthd's `[images] auth_file`: the file the
//! docker and podman CLIs write (`~/.docker/config.json`,
//! `${XDG_RUNTIME_DIR}/containers/auth.json`):
//!
//! ```json
//! {"auths": {"registry:5000": {"auth": "base64(user:pass)"}}}
//! ```
//!
//! An entry may instead hold `username` and `password`, or an
//! `identitytoken`. Its key is a registry as the CLIs write it: `registry:5000`,
//! `https://registry:5000/v2/`, or Docker Hub's `https://index.docker.io/v1/`;
//! the scheme and any path are dropped and Docker Hub's names are all
//! `docker.io`, as [`berth_core::runtime::image_registry`] names it.
//!
//! berth cannot run credential helpers: a `credsStore` or `credHelpers` is
//! an error naming the file. Pure: the caller reads the file.
//!
//! No error and no `Debug` output holds a username, password, token or any
//! other part of an entry: only the file and the registry are named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

/// Docker Hub under every name the CLIs write for it.
const DOCKER_HUB_ALIASES: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// Docker Hub's address in the CLI's requests (and its auth files).
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// How to make a file berth can read, for the errors' advice.
const HOW_TO_WRITE: &str = "write a plain file instead: `docker --config DIR login REGISTRY \
     --username USER --password-stdin` (with no credsStore in DIR/config.json) writes \
     DIR/config.json, then set auth_file to that file";

/// Credentials for one registry. Its `Debug` shows which fields are set,
/// never their values.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RegistryAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    /// An OAuth refresh token (`identitytoken`), as `docker login` keeps
    /// for registries that hand one out.
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |v: &Option<String>| if v.is_some() { "<redacted>" } else { "<none>" };
        f.debug_struct("RegistryAuth")
            .field("username", &shown(&self.username))
            .field("password", &shown(&self.password))
            .field("identity_token", &shown(&self.identity_token))
            .finish()
    }
}

impl RegistryAuth {
    /// For the engine (`X-Registry-Auth`), addressed to `registry` (Docker
    /// Hub by the address the docker CLI gives it).
    pub fn to_docker(&self, registry: &str) -> bollard::auth::DockerCredentials {
        let server = match normalize_registry(registry).as_str() {
            "docker.io" => DOCKER_HUB_SERVER.to_string(),
            other => other.to_string(),
        };
        bollard::auth::DockerCredentials {
            username: self.username.clone(),
            password: self.password.clone(),
            identitytoken: self.identity_token.clone(),
            serveraddress: Some(server),
            ..Default::default()
        }
    }
}

/// A parsed auth file: credentials by registry (normalised).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct AuthFile {
    entries: BTreeMap<String, RegistryAuth>,
}

impl std::fmt::Debug for AuthFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Registries only: which ones have credentials is not a secret.
        f.debug_struct("AuthFile")
            .field("registries", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why an auth file cannot be used. Names the file (and the registry
/// entry), never a value from it.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error(
        "cannot read the registry auth file {path} ([images] auth_file): {reason}; \
         `docker --config DIR login REGISTRY` writes DIR/config.json"
    )]
    Read { path: PathBuf, reason: String },
    #[error(
        "the registry auth file {path} ([images] auth_file) is not JSON ({reason}); \
         give the config.json/auth.json that `docker login` or `podman login` writes"
    )]
    NotJson { path: PathBuf, reason: String },
    #[error(
        "the registry auth file {path} ([images] auth_file): {what}; \
         give the config.json/auth.json that `docker login` or `podman login` writes"
    )]
    Shape { path: PathBuf, what: String },
    #[error(
        "the registry auth file {path} ([images] auth_file) names credential helpers \
         ({key}): berth cannot run credential helpers, it reads credentials from the file \
         itself; {HOW_TO_WRITE}"
    )]
    CredentialHelper { path: PathBuf, key: &'static str },
    #[error(
        "the registry auth file {path} ([images] auth_file): the entry for {registry}: {what}; \
         log in again (`docker --config DIR login {registry}`) to write it anew"
    )]
    BadEntry {
        path: PathBuf,
        registry: String,
        what: String,
    },
}

impl AuthFile {
    /// Reads and parses `path` (blocking: a small file, read at each pull).
    pub fn read(path: &Path) -> Result<AuthFile, AuthFileError> {
        let text = std::fs::read(path).map_err(|e| AuthFileError::Read {
            path: path.to_path_buf(),
            reason: crate::error::chain(&e),
        })?;
        AuthFile::parse(path, &text)
    }

    /// Parses the content of `path` (named in errors).
    pub fn parse(path: &Path, text: &[u8]) -> Result<AuthFile, AuthFileError> {
        let shape = |what: &str| AuthFileError::Shape {
            path: path.to_path_buf(),
            what: what.to_string(),
        };
        // Into a Value first: serde's type errors would quote the values
        // (a password among them); syntax errors name only a position.
        let value: Value = serde_json::from_slice(text).map_err(|e| AuthFileError::NotJson {
            path: path.to_path_buf(),
            reason: format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            )
            .to_lowercase(),
        })?;
        let Value::Object(top) = value else {
            return Err(shape("the top level is not a JSON object"));
        };
        for key in ["credsStore", "credHelpers"] {
            let set = match top.get(key) {
                None | Some(Value::Null) => false,
                Some(Value::String(s)) => !s.is_empty(),
                Some(Value::Object(o)) => !o.is_empty(),
                Some(_) => true,
            };
            if set {
                return Err(AuthFileError::CredentialHelper {
                    path: path.to_path_buf(),
                    key,
                });
            }
        }
        let auths = match top.get("auths") {
            None | Some(Value::Null) => return Ok(AuthFile::default()),
            Some(Value::Object(auths)) => auths,
            Some(_) => return Err(shape("\"auths\" is not an object")),
        };
        let mut entries = BTreeMap::new();
        // A bare key (`registry:5000`) wins over a URL form of the same
        // registry (`https://registry:5000/v2/`), whatever the order.
        let mut from_bare = BTreeMap::new();
        for (key, entry) in auths {
            let registry = normalize_registry(key);
            if registry.is_empty() {
                return Err(shape("an \"auths\" key names no registry"));
            }
            let bad = |what: &str| AuthFileError::BadEntry {
                path: path.to_path_buf(),
                registry: registry.clone(),
                what: what.to_string(),
            };
            let Some(auth) = parse_entry(entry).map_err(bad)? else {
                continue;
            };
            let bare = key.eq_ignore_ascii_case(&registry);
            if from_bare.get(&registry) == Some(&true) && !bare {
                continue;
            }
            from_bare.insert(registry.clone(), bare);
            entries.insert(registry, auth);
        }
        Ok(AuthFile { entries })
    }

    /// The credentials for `registry` (as `image_registry` names it), if
    /// the file has an entry with any.
    pub fn for_registry(&self, registry: &str) -> Option<&RegistryAuth> {
        self.entries.get(&normalize_registry(registry))
    }

    /// The registries with credentials (normalised).
    pub fn registries(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

/// One `auths` entry; `None` when it holds no credentials (`{}`, as the
/// CLIs leave beside a credential store).
fn parse_entry(entry: &Value) -> Result<Option<RegistryAuth>, &'static str> {
    let Value::Object(fields) = entry else {
        return Err("it is not an object");
    };
    let text = |key: &str| -> Result<Option<String>, &'static str> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err("a field is not a string"),
        }
    };
    let mut auth = RegistryAuth {
        username: text("username")?,
        password: text("password")?,
        identity_token: text("identitytoken")?,
    };
    if let Some(encoded) = text("auth")? {
        // The CLIs write `auth` as standard base64 of `user:password`; it
        // says the same as username/password and wins when both are there.
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| "\"auth\" is not base64")?;
        let decoded = String::from_utf8(decoded).map_err(|_| "\"auth\" is not UTF-8 text")?;
        let Some((user, password)) = decoded.split_once(':') else {
            return Err("\"auth\" is not base64 of USER:PASSWORD");
        };
        if !user.is_empty() {
            auth.username = Some(user.to_string());
        }
        if !password.is_empty() {
            auth.password = Some(password.to_string());
        }
    }
    if auth.password.is_some() && auth.username.is_none() {
        return Err("it has a password but no username");
    }
    if auth == RegistryAuth::default() {
        return Ok(None);
    }
    Ok(Some(auth))
}

/// A registry as an auth file's key or an image reference names it:
/// without scheme or path, lower case, Docker Hub as `docker.io`.
pub fn normalize_registry(key: &str) -> String {
    let key = key.trim();
    let rest = ["https://", "http://"]
        .iter()
        .find_map(|scheme| {
            key.get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|_| &key[scheme.len()..])
        })
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        "docker.io".to_string()
    } else {
        host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/etc/berth/auth.json";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn parse(text: &str) -> Result<AuthFile, AuthFileError> {
        AuthFile::parse(Path::new(PATH), text.as_bytes())
    }

    fn creds(user: &str, password: &str) -> RegistryAuth {
        RegistryAuth {
            username: Some(user.into()),
            password: Some(password.into()),
            identity_token: None,
        }
    }

    #[test]
    fn entries_are_read_in_every_form_the_clis_write() {
        let cases: Vec<(String, &str, Option<RegistryAuth>)> = vec![
            (
                format!(
                    r#"{{"auths": {{"reg:5000": {{"auth": "{}"}}}}}}"#,
                    b64("u:p")
                ),
                "reg:5000",
                Some(creds("u", "p")),
            ),
            // A password may hold colons: only the first one splits.
            (
                format!(
                    r#"{{"auths": {{"reg:5000": {{"auth": "{}"}}}}}}"#,
                    b64("u:p:q")
                ),
                "reg:5000",
                Some(creds("u", "p:q")),
            ),
            (
                r#"{"auths": {"reg.example": {"username": "u", "password": "p"}}}"#.into(),
                "reg.example",
                Some(creds("u", "p")),
            ),
            (
                r#"{"auths": {"reg.example": {"identitytoken": "tok"}}}"#.into(),
                "reg.example",
                Some(RegistryAuth {
                    identity_token: Some("tok".into()),
                    ..RegistryAuth::default()
                }),
            ),
            // Docker Hub, as `docker login` writes it.
            (
                format!(
                    r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}}}}}}"#,
                    b64("hub:pw")
                ),
                "docker.io",
                Some(creds("hub", "pw")),
            ),
            (
                format!(
                    r#"{{"auths": {{"registry-1.docker.io": {{"auth": "{}"}}}}}}"#,
                    b64("h:p")
                ),
                "index.docker.io",
                Some(creds("h", "p")),
            ),
            // Scheme and path are dropped; the host compares in any case.
            (
                format!(
                    r#"{{"auths": {{"http://Reg:5000/v2/": {{"auth": "{}"}}}}}}"#,
                    b64("u:p")
                ),
                "reg:5000",
                Some(creds("u", "p")),
            ),
            // No entry for the registry asked about: no credentials.
            (
                format!(
                    r#"{{"auths": {{"other:5000": {{"auth": "{}"}}}}}}"#,
                    b64("u:p")
                ),
                "reg:5000",
                None,
            ),
            // An empty entry (left beside a credential store) holds none.
            (r#"{"auths": {"reg:5000": {}}}"#.into(), "reg:5000", None),
            // No auths at all (a config.json with other settings only).
            (r#"{"psFormat": "table"}"#.into(), "reg:5000", None),
            // Empty helper settings configure nothing.
            (
                r#"{"auths": {}, "credsStore": "", "credHelpers": {}}"#.into(),
                "reg:5000",
                None,
            ),
        ];
        for (text, registry, want) in cases {
            let file = parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                file.for_registry(registry),
                want.as_ref(),
                "{text} for {registry}"
            );
        }
    }

    #[test]
    fn a_bare_key_wins_over_a_url_form_of_the_same_registry() {
        for text in [
            format!(
                r#"{{"auths": {{"reg:5000": {{"auth": "{}"}}, "https://reg:5000/v2/": {{"auth": "{}"}}}}}}"#,
                b64("bare:p"),
                b64("url:p")
            ),
            format!(
                r#"{{"auths": {{"https://reg:5000/v2/": {{"auth": "{}"}}, "reg:5000": {{"auth": "{}"}}}}}}"#,
                b64("url:p"),
                b64("bare:p")
            ),
        ] {
            let file = parse(&text).expect("parses");
            assert_eq!(
                file.for_registry("reg:5000"),
                Some(&creds("bare", "p")),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_files_are_errors_naming_the_file_and_never_a_value() {
        let cases: Vec<(String, &[&str])> = vec![
            ("not json at all s3cret".into(), &["is not JSON", "line 1"]),
            ("[\"s3cret\"]".into(), &["not a JSON object"]),
            (
                r#"{"auths": "s3cret"}"#.into(),
                &["\"auths\" is not an object"],
            ),
            (
                r#"{"auths": {"reg:5000": {"auth": "***s3cret***"}}}"#.into(),
                &["entry for reg:5000", "not base64"],
            ),
            (
                format!(
                    r#"{{"auths": {{"reg:5000": {{"auth": "{}"}}}}}}"#,
                    b64("s3cret")
                ),
                &["entry for reg:5000", "USER:PASSWORD"],
            ),
            (
                r#"{"auths": {"reg:5000": {"password": "s3cret"}}}"#.into(),
                &["entry for reg:5000", "no username"],
            ),
            (
                r#"{"auths": {"reg:5000": {"username": 7, "password": "s3cret"}}}"#.into(),
                &["entry for reg:5000", "not a string"],
            ),
            (
                r#"{"auths": {"reg:5000": "s3cret"}}"#.into(),
                &["entry for reg:5000", "not an object"],
            ),
            (
                r#"{"auths": {}, "credsStore": "desktop"}"#.into(),
                &[
                    "credsStore",
                    "cannot run credential helpers",
                    "--password-stdin",
                ],
            ),
            (
                r#"{"auths": {}, "credHelpers": {"reg:5000": "ecr-login"}}"#.into(),
                &[
                    "credHelpers",
                    "cannot run credential helpers",
                    "docker --config DIR login",
                ],
            ),
        ];
        for (text, parts) in cases {
            let e = parse(&text).expect_err(&text).to_string();
            assert!(e.contains(PATH), "{text}: {e}");
            assert!(e.contains("[images] auth_file"), "{text}: {e}");
            for part in parts {
                assert!(e.contains(part), "{text}: {part} in {e}");
            }
            assert!(!e.contains("s3cret"), "{text}: {e}");
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("auth.json");
        let e = AuthFile::read(&path).expect_err("missing").to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("No such file"), "{e}");
        std::fs::write(
            &path,
            format!(r#"{{"auths": {{"r:1": {{"auth": "{}"}}}}}}"#, b64("u:p")),
        )
        .expect("write");
        let file = AuthFile::read(&path).expect("reads");
        assert_eq!(file.registries().collect::<Vec<_>>(), ["r:1"]);
    }

    #[test]
    fn debug_output_holds_no_credential() {
        let auth = RegistryAuth {
            username: Some("alice-user".into()),
            password: Some("s3cret-pw".into()),
            identity_token: Some("s3cret-tok".into()),
        };
        let file = parse(&format!(
            r#"{{"auths": {{"reg:5000": {{"auth": "{}", "identitytoken": "s3cret-tok"}}}}}}"#,
            b64("alice-user:s3cret-pw")
        ))
        .expect("parses");
        for shown in [
            format!("{auth:?}"),
            format!("{auth:#?}"),
            format!("{file:?}"),
            format!("{file:#?}"),
        ] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(!shown.contains("alice"), "{shown}");
        }
        assert!(format!("{auth:?}").contains("<redacted>"));
        assert!(format!("{file:?}").contains("reg:5000"));
    }

    #[test]
    fn the_engine_gets_the_credentials_for_the_registry() {
        let c = creds("u", "p").to_docker("reg:5000");
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some("p"));
        assert_eq!(c.serveraddress.as_deref(), Some("reg:5000"));
        assert_eq!(c.auth, None);
        let hub = creds("u", "p").to_docker("docker.io");
        assert_eq!(
            hub.serveraddress.as_deref(),
            Some("https://index.docker.io/v1/")
        );
    }

    #[test]
    fn registries_normalize() {
        for (key, want) in [
            ("reg:5000", "reg:5000"),
            ("https://reg:5000", "reg:5000"),
            ("HTTP://reg:5000/v1/", "reg:5000"),
            ("https://index.docker.io/v1/", "docker.io"),
            ("docker.io", "docker.io"),
            ("localhost:5000/", "localhost:5000"),
        ] {
            assert_eq!(normalize_registry(key), want, "{key}");
        }
    }
}
