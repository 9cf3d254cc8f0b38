//! Every file of the shared Heat corpus (`../shared/corpus/heat/`, see its
//! README), read with `berth_core::heat`. Each file is listed in [`TABLE`]
//! with its shape and what heat-config / heat-config-notify would do with
//! it; a file in the folder that the table does not list fails the test.

use std::collections::BTreeSet;
use std::path::PathBuf;

use berth_core::heat::{
    self, Classified, DeployInputs, HeatDocument, HttpMethod, SignalPlan, SignalTransport,
};
use serde_json::{Value, json};

fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/heat");
    assert!(
        dir.is_dir(),
        "the Heat corpus is missing: expected it at {} (the shared corpus sits next to the \
         repository, at ../shared/corpus; it is never copied into the repo)",
        dir.display()
    );
    dir
}

fn load(name: &str) -> Value {
    let path = corpus_dir().join(name);
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

#[derive(Debug, Clone, Copy)]
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

#[test]
fn every_corpus_file_is_in_the_table() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(corpus_dir())
        .expect("read the corpus dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".json"))
        .collect();
    let listed: BTreeSet<String> = TABLE.iter().map(|c| c.file.to_string()).collect();
    assert_eq!(on_disk, listed, "corpus files vs. the table");
}

#[test]
fn corpus_files_read_as_heat_config_would() {
    for case in TABLE {
        let value = load(case.file);
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

#[test]
fn heat_signal_document_plans_keystone_then_heat() {
    let doc = heat::parse_document(&load("heat-agents_notify_data_heat_signal.json")).unwrap();
    let SignalPlan::Heat(h) = doc.deploy_inputs().unwrap().signal_plan().unwrap() else {
        panic!("not HEAT_SIGNAL")
    };
    assert_eq!(h.region_name.as_deref(), Some("RegionOne"));
    let token = h.token_request();
    assert_eq!(token.url.expose(), "mock://192.0.2.3/auth/auth/tokens");
    assert!(!format!("{token:?}").contains("\"password\""));
    let signal = h.signal_request(
        "http://heat:8004/v1/bbbb",
        &heat::Secret::new("t"),
        &json!({}),
    );
    assert_eq!(
        signal.url.expose(),
        "http://heat:8004/v1/bbbb/stacks/cccc/resources/the_resource/signal"
    );
}

#[test]
fn a_corpus_document_turned_berth() {
    // The API sample's first document, as a berth deployment: its inputs
    // reach the service as env, its CFN signal URL is kept.
    let mut doc = load("heat_api-ref_deployment-metadata-response.json")["metadata"][0].clone();
    doc["group"] = json!("berth");
    doc["config"] = json!("name: writer\nimage: busybox:1\nkind: task\n");
    let parsed = heat::parse_document(&doc).unwrap();
    assert!(parsed.is_berth());
    let Classified::Berth(b) = parsed.classify().unwrap() else {
        panic!("not berth")
    };
    assert_eq!(b.id, "3d5ec2a8-7004-43b6-a7f6-542bdbe9d434");
    let env = &b.services[0].env;
    assert_eq!(env["BERTH_INPUT_FOO"].value, "fooooo");
    assert_eq!(env["BERTH_INPUT_BAR"].value, "baaaaa");
    assert_eq!(env.len(), 2, "deploy_* inputs are not env");
    assert_eq!(b.inputs.action.as_deref(), Some("CREATE"));
    let plan = b.inputs.signal_plan().unwrap();
    assert_eq!(plan.transport(), SignalTransport::CfnSignal);
    let signal = heat::compose_signal(
        &b.id,
        &b.outputs,
        &[heat::ServiceOutcome {
            service: "writer".into(),
            status_code: 0,
            stdout: "Written to /tmp/baaaaa\n".into(),
            stderr: "Output to stderr\n".into(),
            outputs: [("result".to_string(), "The file contains fooooo".to_string())].into(),
        }],
    );
    assert_eq!(
        signal.body,
        json!({"deploy_stdout": "[writer] Written to /tmp/baaaaa\n",
               "deploy_stderr": "[writer] Output to stderr\n",
               "deploy_status_code": 0, "result": "The file contains fooooo"})
    );
    assert!(!signal.failed);
}
