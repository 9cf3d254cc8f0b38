//! Rollbacks, decided without I/O: what `berthctl rollback` goes back to,
//! whether a deployment keeps the container it replaces aside while it is
//! judged, which record a failed update swaps back to, and which apply is
//! not retried. The loop reads the history (newest first) and passes it in.

use crate::plan::made_from;
use crate::record::{DeployAction, Deployment, Status};
use crate::runtime::ObservedContainer;
use crate::spec::{Kind, RollbackPolicy, ServiceSpec};

/// The generation whose judging keeps the previous container aside, for
/// [`crate::plan::DesiredService::aside_generation`]: the target record's
/// while it is not finished, when it is a service and not a rollback or a
/// delete (a rollback's predecessor is the failure it undoes). With
/// `update.rollback: none` the container is set aside too, and removed when
/// the deployment ends either way: one swap, whatever the policy.
pub fn aside_generation(target: &Deployment) -> Option<u64> {
    (!target.status.is_terminal() && sets_aside(target)).then_some(target.generation)
}

/// A deployment of this kind keeps the container it replaces aside.
fn sets_aside(d: &Deployment) -> bool {
    d.spec.kind == Kind::Service
        && !matches!(d.action, DeployAction::Rollback | DeployAction::Delete)
}

/// Whether a deployment that failed its judging is swapped back
/// automatically: `update.rollback: auto`, and it is one that sets the
/// container it replaces aside.
pub fn rolls_back(failed: &Deployment) -> bool {
    failed.spec.update.rollback == RollbackPolicy::Auto && sets_aside(failed)
}

/// The record a failed deployment of generation `failed` swaps back to: the
/// newest earlier record that reached the engine and made the container
/// set aside (`aside`: same spec hash and config identity), so policy
/// changes made since that container's create come back too. `None` when
/// the history holds no such record (pruned, or the container is foreign
/// to it): the failure then stays FAILED.
pub fn aside_record<'a>(
    history: &'a [Deployment],
    failed: u64,
    aside: &ObservedContainer,
) -> Option<&'a Deployment> {
    history.iter().find(|d| {
        d.generation < failed
            && d.applied
            && d.image_id.is_some()
            && !matches!(d.action, DeployAction::Delete)
            && !matches!(d.status, Status::RolledBack)
            && made_from(&d.spec_hash, d.config_identity.as_deref(), aside)
    })
}

/// The ROLLED_BACK record an apply of `spec` (hashing to `hash`) must not
/// retry: the newest record an apply made (CREATE or UPDATE), passing over
/// refusals and early failures of this same spec, when it was rolled back
/// and had this very spec and hash. An apply of anything else since then
/// (another image, another setting, a longer `update.health_timeout`)
/// lifts it. `newest_first` is the history, read lazily: it is consumed
/// only up to the newest record an apply made, which is usually the
/// current one.
pub fn not_retried(
    newest_first: impl IntoIterator<Item = Deployment>,
    spec: &ServiceSpec,
    hash: &str,
) -> Option<Deployment> {
    let same = |d: &Deployment| d.spec_hash == hash && d.spec == *spec;
    let newest = newest_first
        .into_iter()
        .filter(|d| matches!(d.action, DeployAction::Create | DeployAction::Update))
        .find(|d| !(d.status == Status::Failed && !d.applied && same(d)))?;
    (newest.status == Status::RolledBack && same(&newest)).then_some(newest)
}

/// The record a rollback restores: generation `wanted` when given, else the
/// newest record that completed, reached the engine and ran another spec
/// than `current_hash` (what the containers have now). `kept` is how many
/// records the history holds, for the message. `Err` is the reason the
/// rollback is refused, to follow the service's name.
pub fn rollback_target<'a>(
    history: &'a [Deployment],
    current_hash: &str,
    wanted: Option<u64>,
    kept: usize,
) -> Result<&'a Deployment, String> {
    let chosen = match wanted {
        Some(g) => history
            .iter()
            .find(|d| d.generation == g)
            .ok_or_else(|| format!("has no generation {g} in its history (kept: last {kept})"))?,
        None => history
            .iter()
            .find(|d| {
                d.status == Status::Complete
                    && d.applied
                    && !d.spec_hash.is_empty()
                    && d.spec_hash != current_hash
                    && d.action != DeployAction::Delete
            })
            .ok_or_else(|| {
                "has no earlier COMPLETE deployment with a different spec to roll back to"
                    .to_string()
            })?,
    };
    if chosen.image_id.is_none() {
        return Err(format!(
            "cannot go back to generation {}: it never resolved an image (it failed before reaching the engine)",
            chosen.generation
        ));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(generation: u64, hash: &str, status: Status) -> Deployment {
        Deployment {
            service: "web".into(),
            generation,
            action: DeployAction::Update,
            status,
            spec_hash: hash.into(),
            image_id: Some(format!("sha256:{generation}")),
            applied: true,
            ..Default::default()
        }
    }

    #[test]
    fn table() {
        let failed_before_engine = |mut d: Deployment| {
            d.image_id = None;
            d.applied = false;
            d
        };
        let not_applied = |mut d: Deployment| {
            d.applied = false;
            d
        };
        let delete = |mut d: Deployment| {
            d.action = DeployAction::Delete;
            d
        };
        // Newest first, as the store returns it; the containers run "h5".
        let history = vec![
            rec(5, "h5", Status::Complete),
            rec(4, "h4", Status::Failed),
            not_applied(rec(3, "h3", Status::Complete)),
            delete(rec(2, "h2", Status::Complete)),
            rec(1, "h1", Status::Complete),
            failed_before_engine(rec(0, "h0", Status::Failed)),
        ];
        struct Case {
            name: &'static str,
            current: &'static str,
            wanted: Option<u64>,
            want: Result<u64, &'static str>,
        }
        let cases = [
            Case {
                name: "the newest complete, applied, other spec; failed, unapplied and deletes skipped",
                current: "h5",
                wanted: None,
                want: Ok(1),
            },
            Case {
                name: "the same spec as what runs is no rollback",
                current: "h1",
                wanted: None,
                want: Ok(5),
            },
            Case {
                name: "a named generation, even a failed one",
                current: "h5",
                wanted: Some(4),
                want: Ok(4),
            },
            Case {
                name: "a generation the history no longer holds",
                current: "h5",
                wanted: Some(9),
                want: Err("has no generation 9 in its history (kept: last 50)"),
            },
            Case {
                name: "a generation that never reached the engine",
                current: "h5",
                wanted: Some(0),
                want: Err("cannot go back to generation 0: it never resolved an image"),
            },
        ];
        for case in cases {
            let got = rollback_target(&history, case.current, case.wanted, 50);
            match (&case.want, &got) {
                (Ok(g), Ok(d)) => assert_eq!(d.generation, *g, "{}", case.name),
                (Err(start), Err(why)) => assert!(why.starts_with(start), "{}: {why}", case.name),
                _ => panic!("{}: got {got:?}", case.name),
            }
        }
        // Nothing to go back to.
        let only = vec![rec(1, "h1", Status::Complete)];
        assert_eq!(
            rollback_target(&only, "h1", None, 50).map(|d| d.generation),
            Err("has no earlier COMPLETE deployment with a different spec to roll back to".into())
        );
    }

    #[test]
    fn the_aside_container_is_kept_while_an_update_is_judged() {
        let mut d = rec(7, "h7", Status::InProgress);
        assert_eq!(aside_generation(&d), Some(7));
        d.status = Status::Pending;
        assert_eq!(aside_generation(&d), Some(7));
        for status in [Status::Complete, Status::Failed, Status::RolledBack] {
            d.status = status;
            assert_eq!(aside_generation(&d), None, "{status}");
        }
        d.status = Status::InProgress;
        for action in [DeployAction::Rollback, DeployAction::Delete] {
            d.action = action;
            assert_eq!(aside_generation(&d), None, "{action}");
            assert!(!rolls_back(&d));
        }
        d.action = DeployAction::Update;
        d.spec.kind = Kind::Task;
        assert_eq!(
            aside_generation(&d),
            None,
            "a task runs once: nothing to gate"
        );
        d.spec.kind = Kind::Service;
        assert!(rolls_back(&d));
        d.spec.update.rollback = RollbackPolicy::None;
        assert!(!rolls_back(&d));
        assert_eq!(aside_generation(&d), Some(7), "set aside either way");
    }

    #[test]
    fn the_record_that_made_the_aside_container() {
        let aside = ObservedContainer {
            id: "c1".into(),
            name: "b-web.prev-g5".into(),
            service: "web".into(),
            spec_hash: Some("h1".into()),
            generation: Some(2),
            config_hash: None,
            state: crate::runtime::ContainerState::Exited,
            exit_code: Some(0),
            health: None,
            restart_count: 0,
            started_at: None,
            restart_policy: Some(crate::spec::RestartPolicy::Never),
        };
        let mut policy_only = rec(3, "h1", Status::Complete);
        policy_only.spec.update.settle = std::time::Duration::from_secs(9);
        let history = vec![
            rec(5, "h5", Status::InProgress),
            rec(4, "h1", Status::Failed),
            policy_only,
            rec(2, "h1", Status::Complete),
        ];
        // The newest earlier record that made it wins, even a failed one
        // (with `rollback: none` its container stayed and was set aside
        // by the next update); later policy changes come back with it.
        assert_eq!(
            aside_record(&history, 5, &aside).map(|d| d.generation),
            Some(4)
        );
        assert_eq!(
            aside_record(&history, 4, &aside).map(|d| d.generation),
            Some(3)
        );
        assert_eq!(
            aside_record(&history, 2, &aside).map(|d| d.generation),
            None
        );
        let mut other = aside.clone();
        other.spec_hash = Some("h9".into());
        assert!(aside_record(&history, 5, &other).is_none());
    }

    #[test]
    fn a_rolled_back_spec_is_not_retried_until_another_arrives() {
        let mut rolled = rec(3, "h3", Status::RolledBack);
        rolled.spec.image = crate::spec::ImageSource::Ref("demo:bad".into());
        let spec = rolled.spec.clone();
        let rollback = {
            let mut d = rec(4, "h2", Status::Complete);
            d.action = DeployAction::Rollback;
            d
        };
        let mut history = vec![rollback, rolled, rec(2, "h2", Status::Complete)];
        assert_eq!(
            not_retried(history.iter().cloned(), &spec, "h3").map(|d| d.generation),
            Some(3)
        );
        // The refusal itself (FAILED, never applied) does not lift it.
        let mut refusal = rec(5, "h3", Status::Failed);
        refusal.applied = false;
        refusal.spec = spec.clone();
        history.insert(0, refusal);
        assert_eq!(
            not_retried(history.iter().cloned(), &spec, "h3").map(|d| d.generation),
            Some(3)
        );
        // Another setting (a longer health timeout) is another spec.
        let mut longer = spec.clone();
        longer.update.health_timeout = std::time::Duration::from_secs(600);
        assert!(not_retried(history.iter().cloned(), &longer, "h3").is_none());
        // The same image resolved to another id is another spec too.
        assert!(not_retried(history.iter().cloned(), &spec, "h3b").is_none());
        // Once a different spec was applied, the old one may come again.
        history.insert(0, rec(6, "h6", Status::Complete));
        assert!(not_retried(history.iter().cloned(), &spec, "h3").is_none());
    }
}
