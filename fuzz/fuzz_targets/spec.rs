//! The spec parser (`berth_core::parse`) on any text, as berthctl and
//! berthd's spec dir read files.
//!
//! Beyond "no panic": errors are never empty, sorted, and point inside the
//! text; every spec parsed goes out as the JSON berthctl sends and comes
//! back through both the file parser and the API's apply body unchanged.
#![no_main]

use berth_core::apply_body;
use berth_core::parse::{ParseErrors, parse_service_json_value, parse_services};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_services("fuzz.yaml", text) {
        Err(ParseErrors(errors)) => {
            assert!(!errors.is_empty(), "an Err with no errors");
            // YAML breaks lines at \r\n, \n and a lone \r alike; the end of
            // the stream may be reported on the line after the last one (as
            // the parser's own property test allows).
            let lines = text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 2;
            for e in &errors {
                assert_eq!(e.file, "fuzz.yaml");
                assert!(!e.message.is_empty(), "an error without a message: {e:?}");
                assert!(e.line <= lines, "{e} is past the end of the text");
            }
            assert!(
                errors.is_sorted_by_key(|e| (e.line, e.column)),
                "errors out of document order: {errors:?}"
            );
        }
        Ok(specs) => {
            for spec in specs {
                let value = serde_json::to_value(&spec).expect("a spec serializes");
                assert_eq!(
                    parse_service_json_value("<api>", &value).as_ref(),
                    Ok(&spec),
                    "the JSON berthctl would send for this spec: {value}"
                );
                match apply_body::service(&value) {
                    Ok(back) => assert_eq!(back, spec, "apply body {value}"),
                    Err(e) => panic!("the apply body for a parsed spec is refused: {e:?}\n{value}"),
                }
            }
        }
    }
});
