//! Every file of the shared Heat corpus (`../shared/corpus/heat/`, see its
//! README), read with `berth_core::heat`. Each file is listed in [`TABLE`]
//! with its shape and what heat-config / heat-config-notify would do with
//! it; a file in the folder that the table does not list fails the test.
//!
//! The corpus sits beside the repository, not in it: where it is missing,
//! the corpus tests skip outside CI and fail in CI (`berth_prereq`). Each
//! has a twin over the project's own fixtures (`tests/fixtures/heat/`,
//! listed in [`FIXTURES`]), written in the same shapes, which always runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_core::heat::{
    self, Classified, DeployInputs, HeatDocument, HttpMethod, SignalPlan, SignalTransport,
};
use serde_json::{Value, json};

/// The project's own Heat documents, in the corpus's shapes.
fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/heat")
}

fn load(dir: &Path, name: &str) -> Value {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"))
}

/// What heat-config-notify would do for a document.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    None,
    /// transport, method, URL
    Url(SignalTransport, HttpMethod, &'static str),
    Heat,
    Zaqar,
    /// `deploy_signal_transport` holds something Heat never sends.
    BadTransport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Shape {
    /// One deployment document (or a derived config).
    Document,
    /// The bare list heat-config reads.
    List,
    /// Server metadata `{"deployments": [...]}`.
    Metadata,
    /// Server metadata that must be refused, not read as an empty set.
    BadMetadata,
    /// The API envelope `{"metadata": [...]}`.
    ApiEnvelope,
    /// An inputs list only.
    Inputs,
    /// Test assertions extracted from hook tests: no documents.
    NotDocuments,
}

struct Case {
    file: &'static str,
    shape: Shape,
    /// Per document, in order: (group as heat-config sees it, signal).
    docs: &'static [(&'static str, Expect)],
}

/// A fixture's CFN signal URL: the same host and signature for each.
macro_rules! concat_signed {
    ($path:literal) => {
        concat!(
            "http://198.51.100.7:8000/v1/signal/",
            $path,
            "?Timestamp=2026-01-02T03%3A04%3A05Z&SignatureMethod=HmacSHA256&AWSAccessKeyId=0f0f0f0f&SignatureVersion=2&Signature=ab12cd34ef56%3D"
        )
    };
}

use Expect as E;
use SignalTransport as T;

const CFN: SignalTransport = T::CfnSignal;

const TABLE: &[Case] = &[
    Case {
        file: "heat-agents_heat-config_deployments.json",
        shape: Shape::List,
        docs: &[
            (
                "chef",
                E::Url(CFN, HttpMethod::Post, "mock://192.0.2.2/foo"),
            ),
            ("cfn-init", E::None),
            ("salt", E::None),
            ("puppet", E::None),
            (
                "script",
                E::Url(CFN, HttpMethod::Post, "mock://192.0.2.3/foo"),
            ),
            ("apply-config", E::None),
            ("hiera", E::None),
            ("json-file", E::None),
            ("no-such-hook", E::None),
            ("hook-raises", E::None),
        ],
    },
    Case {
        file: "heat-agents_hook-chef_data.json",
        shape: Shape::Document,
        // Every deploy_* value is the placeholder "foo".
        docs: &[("chef", E::BadTransport)],
    },
    Case {
        file: "heat-agents_hook-docker-cmd_data.json",
        shape: Shape::Document,
        docs: &[("docker-cmd", E::None)],
    },
    Case {
        file: "heat-agents_hook-docker-cmd_data_exit_code.json",
        shape: Shape::Document,
        docs: &[("docker-cmd", E::None)],
    },
    Case {
        file: "heat-agents_notify_data_heat_signal.json",
        shape: Shape::Document,
        docs: &[("script", E::Heat)],
    },
    Case {
        file: "heat-agents_notify_data_signal_id.json",
        shape: Shape::Document,
        docs: &[(
            "script",
            E::Url(CFN, HttpMethod::Post, "mock://192.0.2.3/foo"),
        )],
    },
    Case {
        file: "heat-agents_notify_data_signal_id_put.json",
        shape: Shape::Document,
        docs: &[(
            "script",
            E::Url(T::TempUrlSignal, HttpMethod::Put, "mock://192.0.2.3/foo"),
        )],
    },
    Case {
        file: "heat-agents_test_hook_docker_cmd.extracted.json",
        shape: Shape::NotDocuments,
        docs: &[],
    },
    Case {
        file: "heat-templates-2016_hook-docker-cmd_data.json",
        shape: Shape::Document,
        docs: &[("docker-cmd", E::None)],
    },
    Case {
        file: "heat-templates-2016_test_hook_docker_cmd.extracted.json",
        shape: Shape::NotDocuments,
        docs: &[],
    },
    Case {
        file: "heat_TEMP_URL_SIGNAL_inputs.json",
        shape: Shape::Inputs,
        docs: &[(
            "",
            E::Url(
                T::TempUrlSignal,
                HttpMethod::Put,
                "http://192.0.2.1/v1/AUTH_a/b/c?temp_url_sig=ctemp_url_expires=1234",
            ),
        )],
    },
    Case {
        file: "heat_ZAQAR_SIGNAL_inputs.json",
        shape: Shape::Inputs,
        docs: &[("", E::Zaqar)],
    },
    Case {
        file: "heat_api-ref_deployment-metadata-response.json",
        shape: Shape::ApiEnvelope,
        docs: &[
            (
                "script",
                E::Url(
                    CFN,
                    HttpMethod::Post,
                    "http://192.168.20.103:8000/v1/signal/arn%3Aopenstack%3Aheat%3A%3Ae2a84fbdaeb047ae8da4b503f3b69f1f%3Astacks%2Fa%2F9bd57090-8954-48ab-bab9-adf9e1ac70fc%2Fresources%2Fdeployment?Timestamp=2014-03-19T20%3A30%3A59Z&SignatureMethod=HmacSHA256&AWSAccessKeyId=ca3571413e4a49998d580215517b3685&SignatureVersion=2&Signature=w6Iu%2BNbg86mqwSOUf1GLuKPO7KaD82PiGpL4ig9Q1l4%3D",
                ),
            ),
            (
                "script",
                E::Url(
                    CFN,
                    HttpMethod::Post,
                    "http://192.168.20.103:8000/v1/signal/arn%3Aopenstack%3Aheat%3A%3Ae2a84fbdaeb047ae8da4b503f3b69f1f%3Astacks%2Fa%2F9bd57090-8954-48ab-bab9-adf9e1ac70fc%2Fresources%2Fother_deployment?Timestamp=2014-03-19T20%3A30%3A59Z&SignatureMethod=HmacSHA256&AWSAccessKeyId=7b761482f8254946bcd3d5ccb36fe939&SignatureVersion=2&Signature=giMfv%2BhrAw6y%2FCMKQIQz2IhO5PkAj5%2BfP5YsL6rul3o%3D",
                ),
            ),
        ],
    },
    Case {
        file: "heat_test_handle_create_derived_config.json",
        shape: Shape::Document,
        docs: &[("Test::Group", E::None)],
    },
    Case {
        file: "heat_test_handle_create_for_component_derived_config.json",
        shape: Shape::Document,
        docs: &[("component", E::None)],
    },
    Case {
        file: "os-collect-config_test_heat_metadata_imposter.json",
        shape: Shape::BadMetadata,
        docs: &[],
    },
    Case {
        file: "os-collect-config_test_merger_metadata.json",
        shape: Shape::Metadata,
        docs: &[
            ("Heat::Ungrouped", E::None),
            ("os-apply-config", E::None),
            ("Heat::Ungrouped", E::None),
            ("ignore_me", E::None),
            ("Heat::Ungrouped", E::None),
        ],
    },
    Case {
        file: "python-heatclient_derived_config_config_values.json",
        shape: Shape::Document,
        docs: &[("puppet", E::None)],
    },
    Case {
        file: "python-heatclient_derived_config_defaults.json",
        shape: Shape::Document,
        docs: &[("Heat::Ungrouped", E::None)],
    },
    Case {
        file: "python-heatclient_derived_config_defaults_empty.json",
        shape: Shape::Document,
        docs: &[("Heat::Ungrouped", E::None)],
    },
    Case {
        file: "python-heatclient_derived_config_temp_url.json",
        shape: Shape::Document,
        docs: &[(
            "Heat::Ungrouped",
            E::Url(
                T::TempUrlSignal,
                HttpMethod::Put,
                "http://192.0.2.1:8080/foo",
            ),
        )],
    },
];

/// The twin of [`TABLE`] over `tests/fixtures/heat/`: every shape and
/// every signal transport of the corpus, in documents written here.
const FIXTURES: &[Case] = &[
    Case {
        file: "list_foreign_groups.json",
        shape: Shape::List,
        docs: &[
            ("ansible", E::None),
            ("puppet", E::None),
            ("script", E::Url(CFN, HttpMethod::Post, FX_CFN_SCRIPT)),
            ("salt", E::None),
            ("chef", E::Url(CFN, HttpMethod::Post, FX_CFN_CHEF)),
            ("os-apply-config", E::None),
            ("docker-cmd", E::None),
            ("hiera", E::None),
            ("json-file", E::None),
            ("cfn-init", E::None),
            ("component", E::None),
            ("no-such-hook", E::None),
        ],
    },
    Case {
        file: "document_docker_cmd.json",
        shape: Shape::Document,
        docs: &[("docker-cmd", E::None)],
    },
    Case {
        file: "document_heat_signal.json",
        shape: Shape::Document,
        docs: &[("script", E::Heat)],
    },
    Case {
        file: "document_cfn_signal.json",
        shape: Shape::Document,
        docs: &[("script", E::Url(CFN, HttpMethod::Post, FX_CFN_DOC))],
    },
    Case {
        file: "document_signal_verb_put.json",
        shape: Shape::Document,
        docs: &[(
            "script",
            E::Url(
                T::TempUrlSignal,
                HttpMethod::Put,
                "http://198.51.100.8:8080/v1/AUTH_fx/c/o?temp_url_sig=00aa11bb&temp_url_expires=2000000000",
            ),
        )],
    },
    Case {
        file: "inputs_temp_url.json",
        shape: Shape::Inputs,
        docs: &[(
            "",
            E::Url(
                T::TempUrlSignal,
                HttpMethod::Put,
                "http://198.51.100.9/v1/AUTH_x/y/z?temp_url_sig=ffee&temp_url_expires=42",
            ),
        )],
    },
    Case {
        file: "inputs_zaqar.json",
        shape: Shape::Inputs,
        docs: &[("", E::Zaqar)],
    },
    Case {
        file: "document_bad_transport.json",
        shape: Shape::Document,
        docs: &[("salt", E::BadTransport)],
    },
    Case {
        file: "metadata_mixed.json",
        shape: Shape::Metadata,
        docs: &[
            ("Heat::Ungrouped", E::None),
            ("os-apply-config", E::None),
            ("Heat::Ungrouped", E::None),
            ("Test::Fixture", E::None),
            ("Heat::Ungrouped", E::None),
        ],
    },
    Case {
        file: "metadata_deployments_map.json",
        shape: Shape::BadMetadata,
        docs: &[],
    },
    Case {
        file: "api_envelope.json",
        shape: Shape::ApiEnvelope,
        docs: &[
            ("script", E::Url(CFN, HttpMethod::Post, FX_CFN_ENV1)),
            ("script", E::Url(CFN, HttpMethod::Post, FX_CFN_ENV2)),
        ],
    },
    Case {
        file: "derived_config_component.json",
        shape: Shape::Document,
        docs: &[("component", E::None)],
    },
    Case {
        file: "derived_config_temp_url.json",
        shape: Shape::Document,
        docs: &[(
            "Heat::Ungrouped",
            E::Url(
                T::TempUrlSignal,
                HttpMethod::Put,
                "http://198.51.100.11:8080/fx-object",
            ),
        )],
    },
    Case {
        file: "derived_config_defaults.json",
        shape: Shape::Document,
        docs: &[("Heat::Ungrouped", E::None)],
    },
    Case {
        file: "extracted_assertions.json",
        shape: Shape::NotDocuments,
        docs: &[],
    },
];

const FX_CFN_SCRIPT: &str = concat_signed!("fx-script");
const FX_CFN_CHEF: &str = concat_signed!("fx-chef");
const FX_CFN_DOC: &str = concat_signed!("fx-cfn-1");
const FX_CFN_ENV1: &str = concat_signed!("fx-env-1");
const FX_CFN_ENV2: &str = concat_signed!("fx-env-2");

fn check_signal(file: &str, inputs: &DeployInputs, want: &Expect) {
    let plan = inputs.signal_plan();
    match (want, &plan) {
        (E::None, Ok(SignalPlan::None)) => {}
        (E::Url(t, m, url), Ok(SignalPlan::Url(u))) => {
            assert_eq!((u.transport, u.method), (*t, *m), "{file}");
            assert_eq!(u.url.expose(), *url, "{file}");
            // Shown without its signature.
            if url.contains('?') {
                assert!(
                    plan.as_ref()
                        .is_ok_and(|p| !p.redacted().contains("Signature="))
                );
                assert!(!format!("{plan:?}").contains("sig="), "{file}");
            }
        }
        (E::Heat, Ok(SignalPlan::Heat(_))) => {}
        (
            E::Zaqar,
            Ok(SignalPlan::Unsupported {
                transport: T::ZaqarSignal,
                ..
            }),
        ) => {}
        (E::BadTransport, Err(e)) => {
            assert!(
                e.to_string().contains("unknown signal transport"),
                "{file}: {e}"
            )
        }
        _ => panic!("{file}: expected {want:?}, got {plan:?}"),
    }
}

fn check_docs(case: &Case, docs: Vec<HeatDocument>) {
    assert_eq!(docs.len(), case.docs.len(), "{}: document count", case.file);
    for (doc, (group, want)) in docs.iter().zip(case.docs) {
        assert!(!doc.is_berth(), "{}", case.file);
        match doc.classify() {
            Ok(Classified::NotOurs(n)) => assert_eq!(n.group, *group, "{}", case.file),
            other => panic!("{}: expected not ours, got {other:?}", case.file),
        }
        let inputs = doc
            .deploy_inputs()
            .unwrap_or_else(|e| panic!("{}: {e}", case.file));
        check_signal(case.file, &inputs, want);
        // No secret input value survives Debug or the redacted view.
        for i in doc.inputs.iter().filter(|i| i.is_secret()) {
            let v = i.value_text();
            // A signal URL's secret part is its query (a URL without one
            // is shown as it is).
            let v = match v.split_once('?') {
                Some((_, query)) if i.name == "deploy_signal_id" => query.to_string(),
                _ if i.name == "deploy_signal_id" => String::new(),
                _ => v,
            };
            if v.len() > 3 {
                // Quoted: the corpus's password is the word "password".
                let quoted = format!("{v:?}");
                assert!(!format!("{doc:?}").contains(&quoted), "{}", case.file);
                assert!(
                    !doc.redacted().to_string().contains(&quoted),
                    "{}",
                    case.file
                );
            }
        }
    }
}

fn all_ok(file: &str, entries: Vec<Result<HeatDocument, heat::HeatError>>) -> Vec<HeatDocument> {
    entries
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{file}: {e}")))
        .collect()
}

fn json_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".json"))
        .collect()
}

fn every_file_is_in(dir: &Path, table: &[Case]) {
    let listed: BTreeSet<String> = table.iter().map(|c| c.file.to_string()).collect();
    assert_eq!(json_files(dir), listed, "{} vs. the table", dir.display());
}

fn read_as_heat_config_would(dir: &Path, table: &[Case]) {
    for case in table {
        let value = load(dir, case.file);
        match case.shape {
            Shape::Document => {
                let doc =
                    heat::parse_document(&value).unwrap_or_else(|e| panic!("{}: {e}", case.file));
                check_docs(case, vec![doc]);
            }
            Shape::List => {
                let entries = heat::parse_deployment_list(&value).expect(case.file);
                check_docs(case, all_ok(case.file, entries));
            }
            Shape::Metadata => {
                let entries = heat::parse_metadata(&value).expect(case.file);
                check_docs(case, all_ok(case.file, entries));
            }
            Shape::ApiEnvelope => {
                let list = value.get("metadata").expect("the envelope's metadata list");
                let entries = heat::parse_deployment_list(list).expect(case.file);
                check_docs(case, all_ok(case.file, entries));
            }
            Shape::BadMetadata => {
                let e = heat::parse_metadata(&value).expect_err(case.file);
                assert_eq!(e.path(), "deployments", "{}: {e}", case.file);
            }
            Shape::Inputs => {
                let inputs = heat::parse_inputs(Some(&value), "inputs").expect(case.file);
                let deploy = DeployInputs::from_inputs(&inputs, "inputs").expect(case.file);
                check_signal(case.file, &deploy, &case.docs[0].1);
            }
            Shape::NotDocuments => {
                assert!(
                    value.get("records").is_some() && value.get("group").is_none(),
                    "{}: expected extracted test assertions",
                    case.file
                );
            }
        }
    }
}

/// HEAT_SIGNAL: a Keystone token first, then Heat's resource signal.
fn plans_keystone_then_heat(doc: &Value, region: &str, token_url: &str, signal_url: &str) {
    let doc = heat::parse_document(doc).expect("a HEAT_SIGNAL document");
    let SignalPlan::Heat(h) = doc
        .deploy_inputs()
        .expect("deploy inputs")
        .signal_plan()
        .expect("a signal plan")
    else {
        panic!("not HEAT_SIGNAL")
    };
    assert_eq!(h.region_name.as_deref(), Some(region));
    let token = h.token_request();
    assert_eq!(token.url.expose(), token_url);
    assert!(!format!("{token:?}").contains("\"password\""));
    let signal = h.signal_request(
        "http://heat:8004/v1/bbbb",
        &heat::Secret::new("t"),
        &json!({}),
    );
    assert_eq!(signal.url.expose(), signal_url);
}

/// An API-envelope document turned `group: berth`: its inputs reach the
/// service as env, its CFN signal URL is kept, outputs are composed as
/// heat-config-notify would.
fn turned_berth(mut doc: Value, id: &str, action: &str, first: &str, bar: &str) {
    doc["group"] = json!("berth");
    doc["config"] = json!("name: writer\nimage: busybox:1\nkind: task\n");
    let parsed = heat::parse_document(&doc).expect("a berth document");
    assert!(parsed.is_berth());
    let Classified::Berth(b) = parsed.classify().expect("classified") else {
        panic!("not berth")
    };
    assert_eq!(b.id, id);
    let env = &b.services[0].env;
    assert_eq!(env["BERTH_INPUT_FOO"].value, first);
    assert_eq!(env["BERTH_INPUT_BAR"].value, bar);
    assert_eq!(env.len(), 2, "deploy_* inputs are not env");
    assert_eq!(b.inputs.action.as_deref(), Some(action));
    let plan = b.inputs.signal_plan().expect("a signal plan");
    assert_eq!(plan.transport(), SignalTransport::CfnSignal);
    let signal = heat::compose_signal(
        &b.id,
        &b.outputs,
        &[heat::ServiceOutcome {
            service: "writer".into(),
            status_code: 0,
            stdout: format!("Written to /tmp/{bar}\n"),
            stderr: "Output to stderr\n".into(),
            outputs: [("result".to_string(), format!("The file contains {first}"))].into(),
        }],
    );
    assert_eq!(
        signal.body,
        json!({"deploy_stdout": format!("[writer] Written to /tmp/{bar}\n"),
               "deploy_stderr": "[writer] Output to stderr\n",
               "deploy_status_code": 0, "result": format!("The file contains {first}")})
    );
    assert!(!signal.failed);
}

// --- The shared corpus (skipped outside CI when it is missing). ---------

#[test]
fn every_corpus_file_is_in_the_table() {
    let Some(dir) = berth_prereq::corpus("heat") else {
        return;
    };
    every_file_is_in(&dir, TABLE);
}

#[test]
fn corpus_files_read_as_heat_config_would() {
    let Some(dir) = berth_prereq::corpus("heat") else {
        return;
    };
    read_as_heat_config_would(&dir, TABLE);
}

#[test]
fn heat_signal_document_plans_keystone_then_heat() {
    let Some(dir) = berth_prereq::corpus("heat") else {
        return;
    };
    plans_keystone_then_heat(
        &load(&dir, "heat-agents_notify_data_heat_signal.json"),
        "RegionOne",
        "mock://192.0.2.3/auth/auth/tokens",
        "http://heat:8004/v1/bbbb/stacks/cccc/resources/the_resource/signal",
    );
}

#[test]
fn a_corpus_document_turned_berth() {
    let Some(dir) = berth_prereq::corpus("heat") else {
        return;
    };
    let doc = load(&dir, "heat_api-ref_deployment-metadata-response.json")["metadata"][0].clone();
    turned_berth(
        doc,
        "3d5ec2a8-7004-43b6-a7f6-542bdbe9d434",
        "CREATE",
        "fooooo",
        "baaaaa",
    );
}

#[test]
fn no_fixture_is_a_copy_of_a_corpus_file() {
    let Some(corpus) = berth_prereq::corpus("heat") else {
        return;
    };
    let read = |dir: &Path, name: &str| std::fs::read(dir.join(name)).expect("read");
    for fixture in json_files(&fixture_dir()) {
        let bytes = read(&fixture_dir(), &fixture);
        for original in json_files(&corpus) {
            assert_ne!(bytes, read(&corpus, &original), "{fixture} is {original}");
        }
    }
}

// --- The twins, over the project's own fixtures: always run. ------------

#[test]
fn every_fixture_file_is_in_the_table() {
    every_file_is_in(&fixture_dir(), FIXTURES);
}

#[test]
fn fixture_files_read_as_heat_config_would() {
    read_as_heat_config_would(&fixture_dir(), FIXTURES);
}

#[test]
fn the_fixtures_cover_every_shape_and_transport_the_corpus_has() {
    let shapes = |t: &[Case]| t.iter().map(|c| c.shape).collect::<BTreeSet<_>>();
    assert_eq!(shapes(FIXTURES), shapes(TABLE));
    let kinds = |t: &[Case]| {
        t.iter()
            .flat_map(|c| c.docs.iter())
            .map(|(_, e)| match e {
                E::None => "none".to_string(),
                E::Url(t, m, _) => format!("{t:?} {m:?}"),
                E::Heat => "heat".into(),
                E::Zaqar => "zaqar".into(),
                E::BadTransport => "bad".into(),
            })
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(kinds(FIXTURES), kinds(TABLE));
    let foreign: BTreeSet<&str> = FIXTURES[0].docs.iter().map(|(g, _)| *g).collect();
    assert!(foreign.len() >= 10, "ten foreign groups: {foreign:?}");
}

#[test]
fn a_fixture_heat_signal_plans_keystone_then_heat() {
    plans_keystone_then_heat(
        &load(&fixture_dir(), "document_heat_signal.json"),
        "RegionTwo",
        "http://keystone.fixture:5000/v3/auth/tokens",
        "http://heat:8004/v1/bbbb/stacks/stack-99/resources/fixture_resource/signal",
    );
}

#[test]
fn a_fixture_document_turned_berth() {
    let doc = load(&fixture_dir(), "api_envelope.json")["metadata"][0].clone();
    turned_berth(doc, "fx-env-1", "UPDATE", "fixture-foo", "fixture-bar");
}

// --- The rule itself. ---------------------------------------------------

/// Runs one corpus test of this binary again with the corpus at an empty
/// directory: outside CI it passes and logs a skip naming the path; with
/// `CI` set it fails naming the path.
#[test]
fn a_missing_corpus_is_skipped_outside_ci_and_fails_in_ci() {
    let empty = std::env::temp_dir().join(format!("berth-no-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("an empty dir");
    let log = empty.join("skips.tsv");
    let missing = empty.join("heat").display().to_string();
    let run = |ci: Option<&str>| {
        let mut cmd = Command::new(std::env::current_exe().expect("this test binary"));
        cmd.args([
            "every_corpus_file_is_in_the_table",
            "--exact",
            "--nocapture",
        ])
        .env("BERTH_CORPUS", &empty)
        .env("BERTH_SKIP_LOG", &log);
        match ci {
            Some(v) => cmd.env("CI", v),
            None => cmd.env_remove("CI"),
        };
        cmd.output().expect("the test binary runs")
    };

    let skipped = run(None);
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(skipped.status.success(), "{}", text(&skipped));
    assert!(text(&skipped).contains("1 passed"), "{}", text(&skipped));
    let logged = std::fs::read_to_string(&log).expect("the skip log");
    assert_eq!(
        logged,
        format!("corpus\t{missing} missing\tevery_corpus_file_is_in_the_table\n")
    );
    assert_eq!(
        berth_prereq::summarize(&logged),
        vec![format!("== corpus: 1 test skipped ({missing} missing)")]
    );

    let failed = run(Some("true"));
    assert!(!failed.status.success(), "{}", text(&failed));
    assert!(text(&failed).contains(&missing), "{}", text(&failed));
    assert!(
        text(&failed).contains("corpus is missing"),
        "{}",
        text(&failed)
    );
    let _ = std::fs::remove_dir_all(&empty);
}
