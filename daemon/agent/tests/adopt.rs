//! `adopt --check` through the loop: the report of the containers another
//! tool started, read through the runtime, changing nothing.

mod common;

use std::collections::BTreeMap;

use berth_core::adopt::{
    AdoptFrom, ForeignContainer, ImageDefaults, LABEL_CONFIG_DATA, LABEL_CONFIG_ID,
    LABEL_CONTAINER_NAME, LABEL_MANAGED_BY, Verdict, config_create,
};
use berth_fakes::runtime::Call;
use common::start;

fn paunch_container(name: &str, config_id: &str, config: &serde_json::Value) -> ForeignContainer {
    let create = config_create(name, &config.to_string()).expect("config converts");
    ForeignContainer {
        id: format!("{name}-0123456789abcdef"),
        name: name.to_string(),
        labels: BTreeMap::from([
            (LABEL_MANAGED_BY.to_string(), "paunch".to_string()),
            (LABEL_CONFIG_ID.to_string(), config_id.to_string()),
            (LABEL_CONTAINER_NAME.to_string(), name.to_string()),
            (LABEL_CONFIG_DATA.to_string(), config.to_string()),
        ]),
        started_at: Some("2026-12-04T10:00:00Z".to_string()),
        running: true,
        create,
        image: ImageDefaults::default(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_check_reports_each_container_and_changes_nothing() {
    let node = start();
    let config = serde_json::json!({
        "image": "demo:1", "net": "host", "restart": "always",
        "environment": {"GREETING": "hello"},
    });
    node.rt()
        .add_tool_container(paunch_container("keystone", "step1", &config));
    let mut changed = paunch_container("nova_api", "step1", &config);
    changed
        .create
        .env
        .insert("GREETING".into(), "by hand".into());
    node.rt().add_tool_container(changed);
    node.rt()
        .add_tool_container(paunch_container("other", "step2", &config));
    let before = node.rt().mutating_calls().len();

    let report = node
        .handle
        .adopt_check(AdoptFrom::Paunch, Some("step1".into()))
        .await
        .expect("a report");
    assert!(report.check);
    let got: Vec<(&str, &Verdict)> = report
        .containers
        .iter()
        .map(|e| (e.name.as_str(), &e.verdict))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], ("keystone", &Verdict::Adopt));
    let Verdict::Differs { diffs } = got[1].1 else {
        panic!("nova_api: {:?}", got[1].1);
    };
    assert_eq!(got[1].0, "nova_api");
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(diffs[0].field, "env.GREETING");
    assert_eq!(diffs[0].container_has, "by hand");
    assert_eq!(
        report.containers[0].systemd_unit,
        "tripleo_keystone.service"
    );

    assert_eq!(
        node.rt().mutating_calls().len(),
        before,
        "a check changes nothing"
    );
    assert!(node.rt().calls().contains(&Call::ListForeign));
    // Other tools' containers are not paunch's.
    let report = node
        .handle
        .adopt_check(AdoptFrom::DockerCmd, None)
        .await
        .expect("a report");
    assert!(report.containers.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_engine_away_is_an_error_not_an_empty_report() {
    let node = start();
    node.rt().set_unreachable(true);
    let err = node
        .handle
        .adopt_check(AdoptFrom::Paunch, None)
        .await
        .expect_err("the engine is away");
    assert!(matches!(err, berth_agent::AgentError::Runtime(_)), "{err}");
}
