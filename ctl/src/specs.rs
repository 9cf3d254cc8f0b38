//! Reading service files the way `apply`, `diff` and `check` take them: files
//! and directories on the command line, parsed by berth-core's parser, with
//! relative image paths made absolute against each file's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_core::parse::parse_services;
use berth_core::spec::ServiceSpec;

/// What a directory argument contributes: its files with these extensions.
pub const SPEC_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Valid specs from every input.
#[derive(Debug)]
pub struct Loaded {
    pub services: Vec<ServiceSpec>,
    pub files: Vec<PathBuf>,
    /// Each service's file, as shown in messages.
    pub declared_in: BTreeMap<String, String>,
}

/// Every problem found, one line each (`file:line:col: field: message`), and
/// how many files were looked at.
#[derive(Debug, Default)]
pub struct LoadErrors {
    pub lines: Vec<String>,
    pub files: usize,
}

/// Expands arguments into files: a file as given, a directory as its
/// `*.yaml`, `*.yml` and `*.json` files (sorted, not recursive).
pub fn expand_inputs(args: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for arg in args {
        let shown = arg.display();
        let meta = match std::fs::metadata(arg) {
            Ok(m) => m,
            Err(e) => {
                errors.push(format!("{shown}: cannot read: {e}"));
                continue;
            }
        };
        if !meta.is_dir() {
            files.push(arg.clone());
            continue;
        }
        let entries = match std::fs::read_dir(arg) {
            Ok(e) => e,
            Err(e) => {
                errors.push(format!("{shown}: cannot list the directory: {e}"));
                continue;
            }
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    errors.push(format!("{shown}: cannot list the directory: {e}"));
                    continue;
                }
            };
            let path = entry.path();
            let ext_ok = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| SPEC_EXTENSIONS.contains(&e));
            // Follows symlinks: a linked file counts, a directory does not.
            if ext_ok && path.is_file() {
                found.push(path);
            }
        }
        if found.is_empty() {
            errors.push(format!(
                "{shown}: no service files (*.yaml, *.yml, *.json) in this directory"
            ));
        }
        found.sort();
        files.extend(found);
    }
    (files, errors)
}

/// Reads, parses and checks every input. All problems are reported at once.
pub fn load(args: &[PathBuf]) -> Result<Loaded, LoadErrors> {
    let (files, mut errors) = expand_inputs(args);
    let mut services: Vec<ServiceSpec> = Vec::new();
    let mut declared_in: BTreeMap<String, String> = BTreeMap::new();
    for file in &files {
        let shown = file.display().to_string();
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{shown}: cannot read: {e}"));
                continue;
            }
        };
        let specs = match parse_services(&shown, &text) {
            Ok(s) => s,
            Err(errs) => {
                errors.extend(errs.0.iter().map(ToString::to_string));
                continue;
            }
        };
        let dir = match spec_dir(file) {
            Ok(d) => d,
            Err(e) => {
                errors.push(format!("{shown}: cannot make its directory absolute: {e}"));
                continue;
            }
        };
        for mut spec in specs {
            if let Some(first) = declared_in.get(&spec.name) {
                errors.push(format!(
                    "{shown}: service `{}` is also declared in {first}; a service may be declared once",
                    spec.name
                ));
                continue;
            }
            declared_in.insert(spec.name.clone(), shown.clone());
            errors.extend(
                missing_relative_paths(&spec, &dir)
                    .into_iter()
                    .map(|p| format!("{shown}: service `{}`: {p}", spec.name)),
            );
            resolve_paths(&mut spec, &dir);
            services.push(spec);
        }
    }
    if errors.is_empty() {
        Ok(Loaded {
            services,
            files,
            declared_in,
        })
    } else {
        Err(LoadErrors {
            lines: errors,
            files: files.len(),
        })
    }
}

/// The absolute directory a spec file's relative paths are relative to.
pub fn spec_dir(file: &Path) -> std::io::Result<PathBuf> {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::path::absolute(parent)
}

/// Makes `build.context` and `load` absolute, taking relative ones against
/// `dir` (the spec file's directory, absolute). `build.dockerfile` is a path
/// inside the context, as with Docker, and stays as written.
pub fn resolve_paths(spec: &mut ServiceSpec, dir: &Path) {
    spec.resolve_relative_paths(dir);
}

/// Relative `build.context`, `load` and `config[].source` paths that name
/// nothing under `dir`, the spec file's directory: they belong to the
/// spec's own tree, so one missing is an error wherever the file is read
/// (a typo in `./app` fails here, not as a FAILED deployment). Absolute
/// paths are the node's: berthd reads them, maybe in a mount namespace of
/// its own, and says so if one is missing.
pub fn missing_relative_paths(spec: &ServiceSpec, dir: &Path) -> Vec<String> {
    use berth_core::spec::ImageSource;
    // (field, path as written, what it must be)
    let mut paths: Vec<(String, &str, Kind)> = Vec::new();
    match &spec.image {
        ImageSource::Build { build } => {
            paths.push(("image.build.context".into(), &build.context, Kind::Dir))
        }
        ImageSource::Load { load } => paths.push(("image.load".into(), load, Kind::File)),
        ImageSource::Ref(_) => {}
    }
    for (i, m) in spec.config.iter().enumerate() {
        paths.push((format!("config[{i}].source"), &m.source, Kind::Any));
    }
    paths
        .into_iter()
        .filter(|(_, path, _)| !path.is_empty() && !path.starts_with('/'))
        .filter_map(|(field, path, kind)| {
            let full = berth_core::spec::relative_to(dir, path);
            let problem = match (std::fs::metadata(&full), kind) {
                (Err(e), _) => e.to_string(),
                (Ok(m), Kind::Dir) if !m.is_dir() => "not a directory".into(),
                (Ok(m), Kind::File) if !m.is_file() => "not a file".into(),
                (Ok(_), _) => return None,
            };
            Some(format!(
                "{field}: `{path}` ({}): {problem}; relative paths are taken from the spec file's directory",
                full.display()
            ))
        })
        .collect()
}

/// What a path in a spec must name.
#[derive(Clone, Copy)]
enum Kind {
    Dir,
    File,
    Any,
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::spec::{BuildSpec, ImageSource};

    fn spec(image: ImageSource) -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            image,
            ..ServiceSpec::default()
        }
    }

    #[test]
    fn build_paths_resolve_against_the_spec_dir() {
        let mut s = spec(ImageSource::Build {
            build: BuildSpec {
                context: "./app".into(),
                dockerfile: Some("docker/Dockerfile.prod".into()),
            },
        });
        resolve_paths(&mut s, Path::new("/etc/berth/services.d"));
        assert_eq!(
            s.image,
            ImageSource::Build {
                build: BuildSpec {
                    context: "/etc/berth/services.d/app".into(),
                    dockerfile: Some("docker/Dockerfile.prod".into()),
                }
            }
        );
    }

    #[test]
    fn dot_and_dotdot() {
        let mut s = spec(ImageSource::Build {
            build: BuildSpec {
                context: ".".into(),
                dockerfile: None,
            },
        });
        resolve_paths(&mut s, Path::new("/srv/specs"));
        assert_eq!(
            s.image,
            ImageSource::Build {
                build: BuildSpec {
                    context: "/srv/specs".into(),
                    dockerfile: None,
                }
            }
        );
        let mut s = spec(ImageSource::Load {
            load: "../images/web.tar".into(),
        });
        resolve_paths(&mut s, Path::new("/srv/specs"));
        assert_eq!(
            s.image,
            ImageSource::Load {
                load: "/srv/specs/../images/web.tar".into()
            }
        );
    }

    #[test]
    fn absolute_paths_and_refs_are_left_alone() {
        let mut s = spec(ImageSource::Build {
            build: BuildSpec {
                context: "/opt/app".into(),
                dockerfile: Some("/opt/Dockerfile".into()),
            },
        });
        let before = s.clone();
        resolve_paths(&mut s, Path::new("/srv/specs"));
        assert_eq!(s, before);

        let mut s = spec(ImageSource::Load {
            load: "/var/images/web.tar".into(),
        });
        let before = s.clone();
        resolve_paths(&mut s, Path::new("/srv/specs"));
        assert_eq!(s, before);

        let mut s = spec(ImageSource::Ref("nginx:1".into()));
        let before = s.clone();
        resolve_paths(&mut s, Path::new("/srv/specs"));
        assert_eq!(s, before);
    }

    #[test]
    fn missing_relative_paths_are_errors_and_absolute_ones_are_left_to_berthd()
    -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("app"))?;
        std::fs::write(dir.path().join("web.tar"), "")?;
        let with = |image: ImageSource, config: &[&str]| {
            let mut s = spec(image);
            s.config = config
                .iter()
                .map(|src| berth_core::spec::ConfigMount {
                    source: src.to_string(),
                    target: "/etc/app".into(),
                    on_change: Default::default(),
                })
                .collect();
            missing_relative_paths(&s, dir.path())
        };
        let build = |context: &str| ImageSource::Build {
            build: BuildSpec {
                context: context.into(),
                dockerfile: None,
            },
        };
        let load = |path: &str| ImageSource::Load { load: path.into() };

        assert!(with(build("./app"), &["web.tar"]).is_empty());
        assert!(with(load("web.tar"), &["app"]).is_empty());
        assert!(with(build("/nowhere/app"), &["/nowhere/conf"]).is_empty());

        let found = with(build("./ap"), &["conf/app.ini"]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with(&format!(
                "image.build.context: `./ap` ({}/ap): No such file or directory",
                dir.path().display()
            )) && found[0].ends_with("relative paths are taken from the spec file's directory"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("config[0].source: `conf/app.ini`"),
            "{found:?}"
        );
        assert_eq!(
            with(build("web.tar"), &[]),
            vec![format!(
                "image.build.context: `web.tar` ({}/web.tar): not a directory; relative paths are taken from the spec file's directory",
                dir.path().display()
            )]
        );
        assert!(with(load("app"), &[])[0].contains("): not a file;"));
        Ok(())
    }

    #[test]
    fn spec_dir_of_a_bare_file_is_the_cwd() -> std::io::Result<()> {
        let cwd = std::env::current_dir()?;
        assert_eq!(spec_dir(Path::new("web.yaml"))?, std::path::absolute(".")?);
        assert!(spec_dir(Path::new("web.yaml"))?.starts_with(&cwd));
        assert_eq!(
            spec_dir(Path::new("/etc/berth/web.yaml"))?,
            PathBuf::from("/etc/berth")
        );
        Ok(())
    }

    #[test]
    fn directories_expand_to_sorted_spec_files() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        for name in ["b.yaml", "a.yml", "c.json", "notes.txt", "d.YAML~"] {
            std::fs::write(dir.path().join(name), "")?;
        }
        std::fs::create_dir(dir.path().join("sub.yaml"))?;
        let (files, errors) = expand_inputs(&[dir.path().to_path_buf()]);
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<_> = files
            .iter()
            .filter_map(|f| f.file_name()?.to_str().map(str::to_string))
            .collect();
        assert_eq!(names, ["a.yml", "b.yaml", "c.json"]);

        let empty = tempfile::tempdir()?;
        let missing = dir.path().join("missing.yaml");
        let (files, errors) = expand_inputs(&[empty.path().to_path_buf(), missing]);
        assert!(files.is_empty());
        assert_eq!(errors.len(), 2);
        assert!(errors[0].contains("no service files"), "{errors:?}");
        assert!(
            errors[1].contains("missing.yaml: cannot read"),
            "{errors:?}"
        );
        Ok(())
    }
}
