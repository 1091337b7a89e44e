//! The document against the code it describes: the router's routes, v1's methods,
//! its own references, and the checked-in `docs/openapi.json`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{document, pretty_json};

const REGENERATE: &str = "regenerate it with `cargo run -p opsq -- openapi > docs/openapi.json`";

fn document_json() -> Value {
    serde_json::to_value(document()).expect("the document serializes")
}

/// `{name}` segments become `{}`: the router names path parameters in snake case,
/// the document as the API reference spells them.
fn normalize(path: &str) -> String {
    let mut out = String::new();
    let mut in_parameter = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_parameter = true;
                out.push_str("{}");
            }
            '}' => in_parameter = false,
            _ if !in_parameter => out.push(c),
            _ => {}
        }
    }
    out
}

/// Whether `text` calls `name(` as a whole word (so `get(` but not `target(`).
fn calls(text: &str, name: &str) -> bool {
    let needle = format!("{name}(");
    text.match_indices(&needle)
        .any(|(at, _)| !text[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_'))
}

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// The `(method, path)` pairs `routes::router` mounts, read from its source: axum
/// cannot list a router's routes, and reading the source keeps the router the one
/// place where routes are written.
fn mounted_routes() -> BTreeSet<(String, String)> {
    let source = include_str!("../routes/mod.rs");
    for other in [".nest(", ".nest_service(", ".merge(", ".route_service("] {
        assert!(
            !source.contains(other),
            "routes/mod.rs uses {other}: teach openapi::tests::mounted_routes to read it"
        );
    }
    let mut routes = BTreeSet::new();
    for chunk in source.split(".route(\"").skip(1) {
        let (path, chain) = chunk.split_once('"').expect("a route's path is a string literal");
        let chain = chain.split(".fallback(").next().unwrap_or(chain);
        let methods: Vec<&str> = METHODS.into_iter().filter(|method| calls(chain, method)).collect();
        assert!(!methods.is_empty(), "no method found for the route {path}");
        for method in methods {
            routes.insert((method.to_string(), normalize(path)));
        }
    }
    routes
}

fn documented_routes(prefix_filter: impl Fn(&str) -> bool) -> BTreeSet<(String, String)> {
    let document = document_json();
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        if !prefix_filter(path) {
            continue;
        }
        for method in METHODS {
            if item.get(method).is_some() {
                routes.insert((method.to_string(), normalize(path)));
            }
        }
    }
    routes
}

/// Routes that are web pages, not API: the dashboard's page, script and style sheet
/// (`routes::dashboard`). Its script calls documented routes only, which the HTTP test
/// `dashboard` checks against this document.
fn is_web_page(path: &str) -> bool {
    path == "/dashboard" || path.starts_with("/dashboard/")
}

#[test]
fn every_mounted_route_is_documented_and_nothing_else() {
    let all = mounted_routes();
    assert!(all.iter().any(|(_, path)| is_web_page(path)), "the dashboard's routes were not found");
    let mounted: BTreeSet<_> = all.into_iter().filter(|(_, path)| !is_web_page(path)).collect();
    assert!(mounted.len() >= 14, "found only {} routes in routes/mod.rs", mounted.len());
    let documented = documented_routes(|path| !path.starts_with("/REST/"));
    assert!(!documented.iter().any(|(_, path)| is_web_page(path)), "the dashboard is not part of the API");
    let undocumented: Vec<_> = mounted.difference(&documented).collect();
    let unmounted: Vec<_> = documented.difference(&mounted).collect();
    assert!(
        undocumented.is_empty(),
        "routes without an OpenAPI description: {undocumented:?}. Annotate the handler with \
         #[utoipa::path(...)], list it in routes/api_doc.rs, and {REGENERATE}"
    );
    assert!(unmounted.is_empty(), "documented routes the router does not mount: {unmounted:?}");
}

/// The `(area, method)` pairs `v1::dispatch` answers, read from its `match`.
fn dispatched_v1_methods() -> BTreeSet<(String, String)> {
    let source = include_str!("../v1/mod.rs");
    source
        .lines()
        .filter_map(|line| line.trim().strip_prefix("(\"")?.split_once(") =>").map(|(pair, _)| pair))
        .map(|pair| {
            let mut parts = pair.split('"').filter(|part| !part.trim().is_empty() && part.trim() != ",");
            let area = parts.next().expect("area").to_string();
            let method = parts.next().expect("method").to_string();
            (area, method)
        })
        .collect()
}

#[test]
fn every_v1_method_is_documented_with_and_without_a_format() {
    let dispatched = dispatched_v1_methods();
    assert_eq!(dispatched.len(), 4, "read {dispatched:?} from v1/mod.rs");
    let listed: BTreeSet<(String, String)> = crate::v1::openapi::METHODS
        .iter()
        .map(|m| (m.area.to_ascii_lowercase(), m.name.to_ascii_lowercase()))
        .collect();
    assert_eq!(listed, dispatched, "v1::openapi::METHODS must list exactly what v1::dispatch answers");
    let documented = documented_routes(|path| path.starts_with("/REST/"));
    for method in &crate::v1::openapi::METHODS {
        for path in [method.path(), format!("{}/{{}}", method.path())] {
            for http in ["get", "post"] {
                assert!(documented.contains(&(http.to_string(), path.clone())), "{http} {path} is missing");
            }
        }
    }
}

/// Every `$ref` in `value`, with where it was found.
fn references(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object {
                if key == "$ref" {
                    found.push((at.to_string(), inner.as_str().unwrap_or_default().to_string()));
                } else {
                    references(inner, &format!("{at}/{key}"), found);
                }
            }
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                references(inner, &format!("{at}/{index}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_reference_and_security_scheme_resolves_and_operation_ids_are_unique() {
    let document = document_json();
    let mut found = Vec::new();
    references(&document, "", &mut found);
    assert!(!found.is_empty());
    for (at, reference) in found {
        let pointer =
            reference.strip_prefix('#').unwrap_or_else(|| panic!("{at}: external $ref {reference}"));
        assert!(document.pointer(pointer).is_some(), "{at}: {reference} does not resolve");
    }
    let schemes = document["components"]["securitySchemes"].as_object().expect("security schemes");
    let mut operation_ids = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in METHODS {
            let Some(operation) = item.get(method) else { continue };
            let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no id"));
            assert!(operation_ids.insert(id.to_string()), "operationId {id} is used twice");
            for requirement in operation["security"].as_array().into_iter().flatten() {
                for name in requirement.as_object().expect("a requirement").keys() {
                    assert!(schemes.contains_key(name), "{method} {path} names the unknown scheme {name}");
                }
            }
            let tags = operation["tags"].as_array().map(Vec::len).unwrap_or(0);
            assert_eq!(tags, 1, "{method} {path} should have exactly one tag");
        }
    }
}

#[test]
fn docs_openapi_json_is_what_the_code_generates() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let checked_in = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read docs/openapi.json ({e}): {REGENERATE}"));
    let generated = pretty_json().expect("the document serializes");
    if checked_in != generated {
        let line = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "docs/openapi.json differs from the document the code generates (first at line {}): {REGENERATE}",
            line + 1
        );
    }
}
