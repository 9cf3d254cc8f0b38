//! The OpenAPI document's spec input (`ServiceSpecInput`, which
//! schemathesis generates bodies from) takes exactly the JSON types the
//! apply-body parser takes (`berth_core::apply_body::SERVICE`), field by
//! field at every depth.

use std::collections::{BTreeMap, BTreeSet};

use berth_api::OPENAPI;
use berth_core::apply_body::{SERVICE, Shape};
use serde_json::Value;

/// What a place takes, in a form both sides can be put in: the scalar
/// types, and what a list, an object with named fields (all of a value's
/// object alternatives together) or an object with free keys holds.
#[derive(Debug, Default, PartialEq)]
struct Takes {
    scalars: BTreeSet<&'static str>,
    list: Option<Box<Takes>>,
    fields: Option<BTreeMap<String, Takes>>,
    map: Option<Box<Takes>>,
}

fn from_shape(shape: &Shape) -> Takes {
    let mut t = Takes::default();
    let alternatives: &[Shape] = match shape {
        Shape::AnyOf(shapes) => shapes,
        other => std::slice::from_ref(other),
    };
    for alt in alternatives {
        match alt {
            Shape::String => _ = t.scalars.insert("string"),
            Shape::Integer => _ = t.scalars.insert("integer"),
            Shape::Number => _ = t.scalars.insert("number"),
            Shape::Boolean => _ = t.scalars.insert("boolean"),
            Shape::List(item) => t.list = Some(Box::new(from_shape(item))),
            Shape::Map(each) => t.map = Some(Box::new(from_shape(each))),
            Shape::Object(fields) => {
                let out = t.fields.get_or_insert_with(BTreeMap::new);
                for (name, f) in *fields {
                    out.insert(name.to_string(), from_shape(f));
                }
            }
            Shape::AnyOf(_) => panic!("nested anyOf in the shape"),
        }
    }
    t
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("a local $ref: {r}"));
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn from_schema(doc: &Value, schema: &Value, at: &str) -> Takes {
    let schema = resolve(doc, schema);
    let mut t = Takes::default();
    let alternatives = match schema["anyOf"].as_array() {
        Some(alts) => alts.iter().collect(),
        None => vec![schema],
    };
    for alt in alternatives {
        let alt = resolve(doc, alt);
        match alt["type"].as_str() {
            Some("string") => _ = t.scalars.insert("string"),
            Some("integer") => _ = t.scalars.insert("integer"),
            Some("number") => _ = t.scalars.insert("number"),
            Some("boolean") => _ = t.scalars.insert("boolean"),
            Some("array") => {
                t.list = Some(Box::new(from_schema(
                    doc,
                    &alt["items"],
                    &format!("{at}[]"),
                )));
            }
            Some("object") => match alt.get("properties").and_then(Value::as_object) {
                Some(props) => {
                    assert_eq!(
                        alt["additionalProperties"],
                        Value::Bool(false),
                        "{at}: an object with named fields takes no others"
                    );
                    let out = t.fields.get_or_insert_with(BTreeMap::new);
                    for (name, p) in props {
                        let f = from_schema(doc, p, &format!("{at}.{name}"));
                        if let Some(before) = out.get(name) {
                            assert_eq!(before, &f, "{at}.{name} differs between alternatives");
                        }
                        out.insert(name.clone(), f);
                    }
                }
                None => {
                    let each = &alt["additionalProperties"];
                    assert!(
                        each.is_object(),
                        "{at}: an object without fields names its values"
                    );
                    t.map = Some(Box::new(from_schema(doc, each, &format!("{at}.*"))));
                }
            },
            other => panic!("{at}: unexpected type {other:?} in {alt}"),
        }
    }
    t
}

/// Every place in `t` (`image.build.context`, `command[]`, `env.*`) and
/// the JSON types it takes there.
fn places(t: &Takes, at: &str, out: &mut BTreeMap<String, Vec<&'static str>>) {
    let mut kinds: Vec<&'static str> = t.scalars.iter().copied().collect();
    if let Some(item) = &t.list {
        kinds.push("list");
        places(item, &format!("{at}[]"), out);
    }
    if let Some(fields) = &t.fields {
        kinds.push("object");
        for (name, f) in fields {
            let path = if at.is_empty() {
                name.clone()
            } else {
                format!("{at}.{name}")
            };
            places(f, &path, out);
        }
    }
    if let Some(each) = &t.map {
        kinds.push("map");
        places(each, &format!("{at}.*"), out);
    }
    out.insert(at.to_string(), kinds);
}

#[test]
fn the_documented_spec_input_takes_what_the_parser_takes() {
    let doc: Value = serde_json::from_str(OPENAPI).expect("the document is JSON");
    let input = &doc["components"]["schemas"]["ServiceSpecInput"];
    let (mut documented, mut parsed) = (BTreeMap::new(), BTreeMap::new());
    places(
        &from_schema(&doc, input, "ServiceSpecInput"),
        "",
        &mut documented,
    );
    places(&from_shape(&SERVICE), "", &mut parsed);
    let paths: BTreeSet<&String> = documented.keys().chain(parsed.keys()).collect();
    let differences: Vec<String> = paths
        .into_iter()
        .filter(|p| documented.get(*p) != parsed.get(*p))
        .map(|p| {
            format!(
                "{p}: the document says {:?}, the parser takes {:?}",
                documented.get(p),
                parsed.get(p)
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "ServiceSpecInput in openapi.json and berth_core::apply_body::SERVICE differ \
         (the parser is the authority; say the same in both): {differences:#?}"
    );
    // Both request bodies that carry specs use it.
    assert_eq!(
        doc["components"]["schemas"]["ApplyRequest"]["properties"]["services"]["items"]["$ref"],
        "#/components/schemas/ServiceSpecInput"
    );
    assert_eq!(
        doc["paths"]["/v1/services/{name}"]["put"]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/ServiceSpecInput"
    );
    // A wrong type is documented where it is answered.
    for (path, method) in [("/v1/apply", "post"), ("/v1/services/{name}", "put")] {
        let d = doc["paths"][path][method]["responses"]["422"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(d.contains("wrong JSON type"), "{method} {path}: {d}");
    }
}
