//! Choosing what `berthctl rollback` goes back to. Pure: the loop reads the
//! history (newest first) and passes it in.

use crate::record::{DeployAction, Deployment, Status};

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
}
