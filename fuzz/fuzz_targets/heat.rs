//! The Heat document parser (`berth_core::heat`) on any JSON: a pushed
//! document (`POST /v1/deployments`), server metadata, the bare list
//! heat-config reads, an inputs file; then each document classified (a
//! berth document's config goes through the spec parser), its `deploy_*`
//! inputs and its signal plan.
//!
//! Beyond "no panic": what leaves the daemon (`Debug`, `redacted()`, error
//! texts, a berth deployment's `Debug`) is the same whatever a secret
//! input's value is; every input reaches every service's env with its
//! secrecy.
#![no_main]

use berth_core::heat::{
    self, Classified, DEPLOY_INPUTS, HeatDocument, parse_deployment_list, parse_document,
    parse_inputs, parse_metadata,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// A copy whose secret input values differ. `deploy_*` inputs are left
/// alone: they are typed and read (`deploy_action` picks a component's
/// config), and `deploy_signal_id` is shown without its signature.
fn with_other_secrets(doc: &HeatDocument) -> HeatDocument {
    let mut other = doc.clone();
    for input in &mut other.inputs {
        if input.is_secret() && !DEPLOY_INPUTS.contains(&input.name.as_str()) {
            input.value = Value::String(format!("{}-other", input.value_text()));
        }
    }
    other
}

/// What a classification shows: a deployment's `Debug`, another agent's
/// group, or the error's text.
fn shown(c: &Result<Classified, heat::HeatError>) -> String {
    match c {
        Ok(Classified::Berth(d)) => format!("{d:?}"),
        Ok(Classified::NotOurs(n)) => format!("{n:?}"),
        Err(e) => format!("error: {e}"),
    }
}

fn check_document(doc: &HeatDocument) {
    let other = with_other_secrets(doc);
    assert_eq!(
        format!("{doc:?}"),
        format!("{other:?}"),
        "Debug shows a secret"
    );
    assert_eq!(
        doc.redacted(),
        other.redacted(),
        "redacted() shows a secret"
    );
    let _ = doc.is_berth();

    let classified = doc.classify();
    assert_eq!(
        shown(&classified),
        shown(&other.classify()),
        "a secret input's value changed what a classification shows"
    );
    if let Ok(Classified::Berth(d)) = &classified {
        let env = doc.input_env().expect("classify checked the input env");
        for spec in &d.services {
            for (var, (value, _)) in &env {
                assert_eq!(
                    spec.env.get(var),
                    Some(value),
                    "service {} lacks input {var} as the document gives it",
                    spec.name
                );
            }
        }
    }

    if let Ok(inputs) = doc.deploy_inputs() {
        let _ = inputs.is_delete();
        let _ = inputs.transport();
        if let Ok(plan) = inputs.signal_plan() {
            let _ = plan.transport();
            let _ = plan.redacted();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    assert!(heat::document_hash(&value).starts_with("sha256:"));

    if let Ok(doc) = parse_document(&value) {
        check_document(&doc);
    }
    for list in [parse_metadata(&value), parse_deployment_list(&value)] {
        for doc in list.into_iter().flatten().flatten() {
            check_document(&doc);
        }
    }
    if let Ok(inputs) = parse_inputs(Some(&value), "inputs") {
        for input in &inputs {
            let _ = input.value_text();
            let _ = heat::input_env_name(&input.name);
        }
    }
});
