//! The importer (`berth_core::import`) on any text, read the way each of
//! `berthctl import`'s commands reads a file: a paunch step file, one
//! tripleo_container_manage container file, a Heat document.
//!
//! Beyond "no panic": every spec it returns was read back by berth's own
//! parser as written (the importer checks that itself; its "reads the
//! written spec back differently" error is a renderer bug and fails here),
//! the same input gives the same bytes twice, and a transport credential
//! input (`deploy_password`) never reaches a written file.
#![no_main]

use berth_core::import::{
    ImageMap, Import, ImportErrors, Input, Options, heat_file, paunch_files, tripleo_files,
};
use libfuzzer_sys::fuzz_target;

const BUG: &str = "reads the written spec back differently";
const PASSWORD: &str = "fuzz-password-never-written";

fn run(command: &str, input: &Input) -> Result<Import, ImportErrors> {
    let map = ImageMap::default();
    let env = |_: &str| None;
    let opts = Options {
        image_map: &map,
        host_env: &env,
    };
    match command {
        "paunch" => paunch_files(std::slice::from_ref(input), &opts),
        "tripleo" => tripleo_files(std::slice::from_ref(input), &opts),
        _ => heat_file(input, &opts),
    }
}

fn written(import: &Import, command: &str) -> Vec<String> {
    import
        .services
        .iter()
        .map(|s| s.file_text(command))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A Heat document whose inputs carry a password: the fuzzed text
    // stands in as a deployment's config.
    let heat = format!(
        r#"{{"group": "docker-cmd", "name": "d", "inputs": [{{"name": "deploy_password", "value": "{PASSWORD}"}}], "config": {text}}}"#
    );
    // Unless the fuzzed text itself holds it, the password is nowhere.
    let planted = !text.contains(PASSWORD);
    for (command, file, input_text) in [
        ("paunch", "step_1.json", text),
        ("tripleo", "step_1/fuzz.json", text),
        ("heat", "heat.json", text),
        ("heat", "heat.json", heat.as_str()),
    ] {
        let text = input_text;
        let input = Input {
            file: file.to_string(),
            text: text.to_string(),
        };
        match run(command, &input) {
            Ok(import) => {
                let once = written(&import, command);
                for f in once.iter().filter(|_| planted) {
                    assert!(!f.contains(PASSWORD), "a credential was written:\n{f}");
                }
                let again = run(command, &input).map(|i| written(&i, command));
                assert_eq!(Some(&once), again.as_ref().ok(), "not the same bytes twice");
            }
            Err(e) => {
                let shown = e.to_string();
                // By the message's start: the input may hold the words.
                assert!(!e.0.iter().any(|p| p.message.starts_with(BUG)), "{shown}");
                assert!(!(planted && shown.contains(PASSWORD)), "{shown}");
            }
        }
    }
});
