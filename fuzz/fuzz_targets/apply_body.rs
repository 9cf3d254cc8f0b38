//! The API's JSON apply bodies (`berth_core::apply_body`): `POST /v1/apply`
//! and `PUT /v1/services/{name}`.
//!
//! Beyond "no panic": a refusal names at least one problem, each with a
//! message; an accepted spec re-serialized is accepted again as the same.
#![no_main]

use berth_core::apply_body::{self, BodyError};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check_refusal(e: &BodyError) {
    match e {
        BodyError::Request(m) => assert!(!m.is_empty(), "an empty request error"),
        BodyError::Fields(problems) => {
            assert!(!problems.is_empty(), "Fields with no problem");
            for p in problems {
                assert!(!p.message.is_empty(), "a problem without a message: {p:?}");
            }
        }
    }
}

fn round_trip(spec: &berth_core::spec::ServiceSpec) {
    let value = serde_json::to_value(spec).expect("a spec serializes");
    match apply_body::service(&value) {
        Ok(back) => assert_eq!(&back, spec, "re-sent as {value}"),
        Err(e) => panic!("an accepted spec is refused when sent again: {e:?}\n{value}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match apply_body::service(&body) {
        Ok(spec) => round_trip(&spec),
        Err(e) => check_refusal(&e),
    }
    match apply_body::apply_request(&body) {
        Ok(req) => {
            for spec in &req.services {
                round_trip(spec);
            }
        }
        Err(e) => check_refusal(&e),
    }
});
