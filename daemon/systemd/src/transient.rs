//! Host commands as transient units: start, re-attach by name, clean up.

use std::time::Duration;

use berth_core::host::{
    ExitStatus, HostError, OUTPUT_CAP, TransientPhase, TransientResult, TransientSpec, cap_output,
    validate_hook_unit_name,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use zbus::zvariant::{OwnedObjectPath, Value};

use crate::STOP_GRACE;
use crate::bus::{DbusHost, MANAGER_IFACE, SERVICE_IFACE};

fn check_hook_name(name: &str) -> Result<(), HostError> {
    validate_hook_unit_name(name).map_err(|reason| HostError::InvalidName {
        unit: name.to_string(),
        reason,
    })
}

/// What systemd would refuse (or do surprisingly), refused up front with
/// berth's words (core's check, shared with the fake).
pub(crate) fn validate(spec: &TransientSpec) -> Result<(), HostError> {
    berth_core::host::validate_transient(spec)
}

fn usec(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The `StartTransientUnit` properties for `spec` (validated).
pub(crate) fn properties(spec: &TransientSpec) -> Vec<(&'static str, Value<'static>)> {
    let argv0 = spec.argv.first().cloned().unwrap_or_default();
    let mut p: Vec<(&'static str, Value<'static>)> = vec![
        (
            "Description",
            Value::from(format!("berth host hook {}", spec.unit_name)),
        ),
        // exec: the start job fails if the program cannot be executed.
        ("Type", Value::from("exec")),
        // Keeps a successful run's unit (and its exit status) around until
        // berth has read it; a failed run stays `failed` anyway.
        ("RemainAfterExit", Value::from(true)),
        (
            "ExecStart",
            Value::from(vec![(argv0, spec.argv.clone(), false)]),
        ),
        // Both into one file (stderr shares stdout's descriptor when the
        // paths are equal), emptied at start.
        (
            "StandardOutputFileToTruncate",
            Value::from(spec.output_path.clone()),
        ),
        (
            "StandardErrorFileToTruncate",
            Value::from(spec.output_path.clone()),
        ),
        ("TimeoutStopUSec", Value::from(usec(STOP_GRACE))),
    ];
    if !spec.env.is_empty() {
        let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        p.push(("Environment", Value::from(env)));
    }
    if let Some(dir) = &spec.working_dir {
        p.push(("WorkingDirectory", Value::from(dir.clone())));
    }
    if let Some(t) = spec.timeout {
        p.push(("RuntimeMaxUSec", Value::from(usec(t))));
    }
    p
}

pub(crate) async fn run(host: &DbusHost, spec: TransientSpec) -> Result<(), HostError> {
    validate(&spec)?;
    let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
    let body = (spec.unit_name.as_str(), "fail", properties(&spec), aux);
    let _job: OwnedObjectPath = host
        .manager_call("StartTransientUnit", &spec.unit_name, &body)
        .await?;
    Ok(())
}

pub(crate) async fn result(
    host: &DbusHost,
    name: &str,
    output_path: &str,
) -> Result<Option<TransientResult>, HostError> {
    check_hook_name(name)?;
    // GetUnit, not LoadUnit: a unit systemd forgot is gone, not `not-found`.
    let path = host.get_unit(name).await?;
    let state = host.read_state(path.as_str(), name).await?.state;
    match TransientPhase::of(&state) {
        TransientPhase::Running => return Ok(None),
        TransientPhase::Gone => {
            return Err(HostError::NoSuchUnit {
                unit: name.to_string(),
            });
        }
        TransientPhase::Finished => {}
    }
    let service = host.get_all(path.as_str(), SERVICE_IFACE, name).await?;
    let code = crate::props::int(&service, "ExecMainCode").unwrap_or(0);
    let status = crate::props::int(&service, "ExecMainStatus").unwrap_or(0);
    let exit = ExitStatus::from_exec_main(
        i32::try_from(code).unwrap_or(0),
        i32::try_from(status).unwrap_or(-1),
    );
    let result = crate::props::string(&service, "Result")
        .or(state.result)
        .unwrap_or_else(|| "unknown".into());
    let (output, output_truncated) = read_output(name, output_path).await?;
    Ok(Some(TransientResult {
        unit_name: name.to_string(),
        result,
        exit,
        output,
        output_truncated,
    }))
}

/// The last [`OUTPUT_CAP`] bytes of the output file; empty if there is none
/// (the command never started).
pub(crate) async fn read_output(name: &str, path: &str) -> Result<(String, bool), HostError> {
    let err = |e: std::io::Error| HostError::Output {
        unit: name.to_string(),
        path: path.to_string(),
        reason: e.to_string(),
    };
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((String::new(), false)),
        Err(e) => return Err(err(e)),
    };
    let len = file.metadata().await.map_err(err)?.len();
    // A few bytes more than the cap, so a character cut by the cap can be
    // recognised and dropped.
    let want = (OUTPUT_CAP as u64).saturating_add(3);
    if len > want {
        file.seek(std::io::SeekFrom::Start(len - want))
            .await
            .map_err(err)?;
    }
    let mut buf = Vec::with_capacity(usize::try_from(len.min(want)).unwrap_or(OUTPUT_CAP));
    file.take(want).read_to_end(&mut buf).await.map_err(err)?;
    Ok(cap_output(&buf, OUTPUT_CAP))
}

pub(crate) async fn cleanup(
    host: &DbusHost,
    name: &str,
    output_path: &str,
) -> Result<(), HostError> {
    check_hook_name(name)?;
    // Subscribed before StopUnit, so the stop job's end cannot be missed.
    let (_conn, mut signals) = crate::watch::subscribe(host).await?;
    match host
        .manager_call::<_, OwnedObjectPath>("StopUnit", name, &(name, "replace"))
        .await
    {
        Ok(job) => {
            let wait = async {
                while let Some(msg) = signals.recv().await {
                    if job_removed(&msg).as_ref() == Some(&job) {
                        return true;
                    }
                }
                false
            };
            let deadline = STOP_GRACE + Duration::from_secs(20);
            match tokio::time::timeout(deadline, wait).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(HostError::Disconnected {
                        bus: host.bus.to_string(),
                        reason: format!("the signal stream ended while stopping {name}"),
                    });
                }
                Err(_) => tracing::warn!(
                    "stopping {name} did not finish within {deadline:?}; resetting it anyway"
                ),
            }
        }
        Err(HostError::NoSuchUnit { .. }) => {}
        Err(e) => return Err(e),
    }
    drop(signals);
    match host
        .manager_call::<_, ()>("ResetFailedUnit", name, &(name,))
        .await
    {
        Ok(()) | Err(HostError::NoSuchUnit { .. }) => {}
        Err(e) => return Err(e),
    }
    match tokio::fs::remove_file(output_path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(HostError::Output {
            unit: name.to_string(),
            path: output_path.to_string(),
            reason: format!("cannot remove it: {e}"),
        }),
    }
}

/// The job path of a `JobRemoved` signal.
fn job_removed(msg: &zbus::Message) -> Option<OwnedObjectPath> {
    let header = msg.header();
    if header.interface()?.as_str() != MANAGER_IFACE || header.member()?.as_str() != "JobRemoved" {
        return None;
    }
    let (_id, job, _unit, _result) = msg
        .body()
        .deserialize::<(u32, OwnedObjectPath, String, String)>()
        .ok()?;
    Some(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TransientSpec {
        TransientSpec {
            unit_name: "berth-hook-web-pre_stop-1.service".into(),
            argv: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
            env: [("A".to_string(), "1".to_string())].into(),
            working_dir: Some("/tmp".into()),
            output_path: "/var/lib/berth/hooks/x.out".into(),
            timeout: Some(Duration::from_secs(2)),
        }
    }

    #[test]
    fn a_good_spec_passes_and_bad_ones_say_why() {
        assert_eq!(validate(&spec()), Ok(()));
        let bad = |f: fn(&mut TransientSpec)| {
            let mut s = spec();
            f(&mut s);
            validate(&s).expect_err("must be refused").to_string()
        };
        assert!(bad(|s| s.unit_name = "sshd.service".into()).contains("berth-hook-"));
        assert!(bad(|s| s.argv.clear()).contains("empty command"));
        assert!(bad(|s| s.output_path = "rel/x.out".into()).contains("not absolute"));
        assert!(bad(|s| s.working_dir = Some("rel".into())).contains("not absolute"));
        assert!(
            bad(|s| {
                s.env.insert("A=B".into(), "x".into());
            })
            .contains("environment")
        );
        assert!(bad(|s| s.timeout = Some(Duration::ZERO)).contains("zero timeout"));
    }

    #[test]
    fn properties_carry_the_spec() {
        let p = properties(&spec());
        let get = |k: &str| {
            p.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {k}"))
        };
        assert_eq!(get("Type"), Value::from("exec"));
        assert_eq!(get("RemainAfterExit"), Value::from(true));
        assert_eq!(get("RuntimeMaxUSec"), Value::from(2_000_000u64));
        assert_eq!(get("TimeoutStopUSec"), Value::from(10_000_000u64));
        assert_eq!(
            get("StandardOutputFileToTruncate"),
            get("StandardErrorFileToTruncate")
        );
        assert_eq!(get("Environment"), Value::from(vec!["A=1".to_string()]));
        assert_eq!(get("WorkingDirectory"), Value::from("/tmp".to_string()));
        assert_eq!(
            get("ExecStart").value_signature().to_string(),
            "a(sasb)".to_string()
        );
        let mut no_limit = spec();
        no_limit.timeout = None;
        no_limit.env.clear();
        no_limit.working_dir = None;
        let p = properties(&no_limit);
        assert!(!p.iter().any(|(k, _)| *k == "RuntimeMaxUSec"));
        assert!(!p.iter().any(|(k, _)| *k == "Environment"));
    }

    #[tokio::test]
    async fn output_is_read_from_the_end_and_capped() {
        let dir = std::env::temp_dir().join(format!("berth-sd-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.out");
        let p = path.to_str().unwrap();
        assert_eq!(read_output("u", p).await.unwrap(), (String::new(), false));
        std::fs::write(&path, b"out\nerr\n").unwrap();
        assert_eq!(
            read_output("u", p).await.unwrap(),
            ("out\nerr\n".to_string(), false)
        );
        let mut big = vec![b'a'; OUTPUT_CAP];
        big.extend_from_slice(b"END");
        std::fs::write(&path, &big).unwrap();
        let (s, cut) = read_output("u", p).await.unwrap();
        assert!(cut);
        assert_eq!(s.len(), OUTPUT_CAP);
        assert!(s.ends_with("aEND"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
