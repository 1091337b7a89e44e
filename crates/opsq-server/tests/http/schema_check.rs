//! Checks real answers against the OpenAPI document a server serves: the status is
//! one the operation documents, the documented headers are there, and the body fits
//! the documented schema *exactly*: no field the schema lacks (whatever its
//! `additionalProperties`), none it requires missing. The subset of JSON Schema here is what utoipa and `v1::openapi` write.

use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

pub struct Document(pub Value);

impl Document {
    pub fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.strip_prefix('#').expect("a local $ref");
                self.resolve(
                    self.0.pointer(pointer).unwrap_or_else(|| panic!("{reference} does not resolve")),
                )
            }
            None => value,
        }
    }

    /// The documented response of `method path` for `status`.
    pub fn response(&self, method: &str, path: &str, status: u16) -> &Value {
        let operation = &self.0["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        let response = operation["responses"]
            .get(status.to_string())
            .unwrap_or_else(|| panic!("{method} {path} does not document the status {status} it answered"));
        self.resolve(response)
    }

    /// Asserts a JSON answer of `method path` fits the document; `path` is the
    /// template (`/v2/operations/{alias}/...`).
    pub fn check(&self, method: &str, path: &str, status: u16, headers: &HeaderMap, body: &Value) {
        let response = self.response(method, path, status);
        // v1 sets these only on some outcomes (a logon, a throttled logon).
        let conditional = ["Set-Cookie", "Retry-After"];
        let headers_documented = response["headers"].as_object().into_iter().flat_map(Map::keys);
        for name in headers_documented.filter(|name| !conditional.contains(&name.as_str())) {
            assert!(headers.contains_key(name.as_str()), "{method} {path} {status}: no {name} header");
        }
        let content = &response["content"];
        let media = content
            .as_object()
            .and_then(|c| c.iter().find(|(kind, _)| kind.contains("json")))
            .map(|(_, media)| media)
            .unwrap_or_else(|| panic!("{method} {path} {status} documents no JSON body"));
        if let Err(error) = self.fits(&media["schema"], body, "body") {
            panic!("{method} {path} {status}: {error}\nbody: {body}");
        }
    }

    /// The properties and required names of an object schema, through `$ref` and
    /// `allOf` (whose branches together describe one object).
    fn object_parts(&self, schema: &Value, properties: &mut Map<String, Value>, required: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if let Some(branches) = schema["allOf"].as_array() {
            for branch in branches {
                self.object_parts(branch, properties, required);
            }
        }
        if let Some(own) = schema["properties"].as_object() {
            properties.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if let Some(own) = schema["required"].as_array() {
            required.extend(own.iter().filter_map(Value::as_str).map(String::from));
        }
    }

    pub fn fits(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let schema = self.resolve(schema);
        if let Some(branches) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
            let errors: Vec<String> =
                branches.iter().filter_map(|branch| self.fits(branch, value, at).err()).collect();
            return if errors.len() < branches.len() {
                Ok(())
            } else {
                Err(format!("{at}: fits no alternative: {}", errors.join(" | ")))
            };
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(value) {
                return Err(format!("{at}: {value} is not one of {allowed:?}"));
            }
        }
        let types: Vec<&str> = match &schema["type"] {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ if schema["allOf"].is_array() || schema["properties"].is_object() => vec!["object"],
            _ => return Ok(()), // any value
        };
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let integer_as_number = kind == "integer" && types.contains(&"number");
        if !types.contains(&kind) && !integer_as_number {
            return Err(format!("{at}: a {kind} where the schema wants {types:?}"));
        }
        match value {
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    self.fits(&schema["items"], item, &format!("{at}/{index}"))?;
                }
            }
            Value::Object(object) => {
                let (mut properties, mut required) = (Map::new(), Vec::new());
                self.object_parts(schema, &mut properties, &mut required);
                if properties.is_empty() {
                    return Ok(()); // a free-form object
                }
                for name in &required {
                    if !object.contains_key(name) {
                        return Err(format!("{at}: the required field {name} is missing"));
                    }
                }
                for (name, inner) in object {
                    let property = properties
                        .get(name)
                        .ok_or_else(|| format!("{at}: the field {name} is not in the schema"))?;
                    self.fits(property, inner, &format!("{at}/{name}"))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Asserts an XML reply of `method path` fits the document: the root element's
    /// name, its attributes, and its child elements' attributes, as the schema's
    /// `xml` objects describe them.
    pub fn check_xml(&self, method: &str, path: &str, status: u16, text: &str) {
        let response = self.response(method, path, status);
        let media = response["content"]
            .as_object()
            .and_then(|c| c.iter().find(|(kind, _)| kind.contains("xml")))
            .map(|(_, media)| media)
            .unwrap_or_else(|| panic!("{method} {path} {status} documents no XML body"));
        let schema = self.resolve(&media["schema"]);
        let xml = roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("not XML ({e}): {text}"));
        let root = xml.root_element();
        assert_eq!(root.tag_name().name(), schema["xml"]["name"], "{method} {path}: the root element");
        self.check_attributes(schema, root, &format!("{method} {path}"));
        for child in root.children().filter(roxmltree::Node::is_element) {
            let name = child.tag_name().name();
            let property = self.resolve(&schema["properties"][name]);
            assert!(property.is_object(), "{method} {path}: the element {name} is not in the schema");
            if property["type"] == "array" {
                assert_eq!(property["xml"]["wrapped"], true, "{name} should be a wrapped array");
                for item in child.children().filter(roxmltree::Node::is_element) {
                    self.check_attributes(self.resolve(&property["items"]), item, name);
                }
            } else {
                self.check_attributes(property, child, name);
            }
        }
    }

    /// Every attribute of `element` is a property the schema says is an attribute, and
    /// every required one is there.
    fn check_attributes(&self, schema: &Value, element: roxmltree::Node, at: &str) {
        for attribute in element.attributes() {
            let property = &schema["properties"][attribute.name()];
            assert_eq!(
                property["xml"]["attribute"],
                true,
                "{at}: the attribute {} is not documented",
                attribute.name()
            );
        }
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap_or_default();
            assert!(element.attribute(name).is_some(), "{at}: the required attribute {name} is missing");
        }
    }
}
