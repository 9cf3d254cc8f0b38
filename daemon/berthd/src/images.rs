//! `[images]` for the runtime: its pull settings, and the auth file
//! checked at start (a bad one is exit 78) and at SIGHUP (a bad one keeps
//! the running file), so a credential helper or a broken file is named at
//! once instead of at the first pull. The runtime reads the file again at
//! each pull.

use crate::config::{Config, ConfigError, Images};

/// The runtime's pull settings.
pub fn options(images: &Images) -> berth_docker::ImagesOptions {
    berth_docker::ImagesOptions {
        auth_file: images.auth_file.clone(),
        max_concurrent_pulls: images.max_concurrent_pulls,
        pull_timeout: images.pull_timeout,
    }
}

/// Reads and checks `cfg`'s `[images] auth_file`, if set; returns warnings
/// (a file every user may read). Errors name the config file, the key, the
/// auth file and the fix, never a credential.
pub fn check_auth_file(cfg: &Config) -> Result<Vec<String>, ConfigError> {
    let Some(path) = &cfg.images.auth_file else {
        return Ok(Vec::new());
    };
    berth_docker::auth::AuthFile::read(path).map_err(|e| ConfigError::Invalid {
        path: cfg
            .path
            .as_ref()
            .map_or_else(|| "<defaults>".to_string(), |p| p.display().to_string()),
        message: format!("images.auth_file: {e}"),
    })?;
    let mut warnings = Vec::new();
    use std::os::unix::fs::MetadataExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.mode() & 0o004 != 0
    {
        warnings.push(format!(
            "images.auth_file {} holds registry credentials and every user may read it \
             (mode {:o}): chmod 600 it",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::Path;

    use super::*;

    fn config_with(auth: &Path) -> Config {
        let text = format!("[images]\nauth_file = {:?}\n", auth.display().to_string());
        crate::config::from_text(Some(Path::new("/etc/berth/berthd.toml")), Some(&text), None)
            .expect("config")
    }

    #[test]
    fn the_auth_file_is_checked_naming_the_config_the_key_and_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let auth = dir.path().join("auth.json");
        let shown = auth.display().to_string();
        let cfg = config_with(&auth);
        for (content, part) in [
            (None, "No such file"),
            (Some("not json s3cret"), "is not JSON"),
            (
                Some(r#"{"auths": {"r:5000": {"auth": "dTpzM2NyZXQ="}}, "credsStore": "pass"}"#),
                "berth cannot run credential helpers",
            ),
        ] {
            if let Some(text) = content {
                std::fs::write(&auth, text).expect("write");
            }
            let e = check_auth_file(&cfg).expect_err(part).to_string();
            for want in [
                "config /etc/berth/berthd.toml: images.auth_file: ",
                shown.as_str(),
                part,
            ] {
                assert!(e.contains(want), "{want}: {e}");
            }
            assert!(!e.contains("s3cret"), "{e}");
        }
        std::fs::write(&auth, r#"{"auths": {"r:5000": {"auth": "dTpzM2NyZXQ="}}}"#).expect("write");
        std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(check_auth_file(&cfg).expect("good").len(), 0);
        std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let warnings = check_auth_file(&cfg).expect("good, but readable");
        assert!(
            warnings.len() == 1 && warnings[0].contains("chmod 600"),
            "{warnings:?}"
        );
        assert_eq!(
            check_auth_file(&Config {
                images: Images::default(),
                ..cfg
            })
            .expect("none")
            .len(),
            0
        );
    }

    #[test]
    fn the_defaults_are_the_runtimes() {
        let o = options(&Images::default());
        assert_eq!(o, berth_docker::ImagesOptions::default());
    }
}
