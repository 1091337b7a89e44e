//! `opsq openapi` prints the OpenAPI document, byte for byte what `docs/openapi.json`
//! holds, so the documented way to regenerate that file stays true.

use std::process::Command;

use crate::harness::{text, BIN};

#[test]
fn opsq_openapi_prints_what_docs_openapi_json_holds() {
    let out = Command::new(BIN).arg("openapi").output().expect("run opsq openapi");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = String::from_utf8(out.stdout).expect("UTF-8");
    let document: serde_json::Value = serde_json::from_str(&printed).expect("the output is JSON");
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["paths"]["/v2/operations/{alias}/jobs"].is_object());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let checked_in = std::fs::read_to_string(path).expect("read docs/openapi.json");
    assert!(
        printed == checked_in,
        "docs/openapi.json is not what `opsq openapi` prints: regenerate it with \
         `cargo run -p opsq -- openapi > docs/openapi.json`"
    );
}
