//! XML in and out. Parsing refuses any DTD (so no entity expansion, external or
//! recursive, can ever happen) and any entity other than XML's five predefined ones
//! and character references.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::reply::V1Error;

/// Deepest nesting accepted; v1 requests are a root and its parameters.
const MAX_DEPTH: usize = 8;

/// The parameters of a v1 XML request: the text of each child of the root element,
/// plus the root's attributes.
pub fn parameters(body: &[u8]) -> Result<Vec<(String, String)>, V1Error> {
    let text = std::str::from_utf8(body).map_err(|_| V1Error::format("the XML body is not UTF-8".into()))?;
    let mut reader = Reader::from_str(text);
    let mut params = Vec::new();
    let mut depth = 0usize;
    let mut current: Option<(String, String)> = None;
    let malformed = |e: &dyn std::fmt::Display| V1Error::format(format!("the XML body is malformed: {e}"));
    loop {
        match reader.read_event().map_err(|e| malformed(&e))? {
            Event::DocType(_) => {
                return Err(V1Error::format("XML with a DTD (DOCTYPE) is not accepted".into()));
            }
            Event::Start(element) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(V1Error::format("the XML body is nested too deeply".into()));
                }
                match depth {
                    1 => params.extend(attributes(&element)?),
                    2 => current = Some((name_of(&element)?, String::new())),
                    _ => {}
                }
            }
            Event::Empty(element) => match depth {
                0 => params.extend(attributes(&element)?),
                1 => params.push((name_of(&element)?, String::new())),
                _ => {}
            },
            Event::End(_) => {
                if depth == 2 {
                    params.extend(current.take());
                }
                depth = depth.saturating_sub(1);
            }
            Event::Text(text) => {
                if let Some((_, value)) = current.as_mut() {
                    value.push_str(&text.xml10_content().map_err(|e| malformed(&e))?);
                }
            }
            Event::CData(data) => {
                if let Some((_, value)) = current.as_mut() {
                    value.push_str(&data.decode().map_err(|e| malformed(&e))?);
                }
            }
            Event::GeneralRef(reference) => {
                let name = reference.decode().map_err(|e| malformed(&e))?;
                let resolved = resolve_reference(&name)
                    .ok_or_else(|| V1Error::format(format!("the XML entity &{name}; is not accepted")))?;
                if let Some((_, value)) = current.as_mut() {
                    value.push_str(&resolved);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if depth != 0 {
        return Err(V1Error::format("the XML body ends before its elements are closed".into()));
    }
    Ok(params.into_iter().map(|(name, value)| (name, value.trim().to_string())).collect())
}

fn name_of(element: &BytesStart<'_>) -> Result<String, V1Error> {
    std::str::from_utf8(element.local_name().as_ref())
        .map(str::to_string)
        .map_err(|_| V1Error::format("an XML element name is not UTF-8".into()))
}

fn attributes(element: &BytesStart<'_>) -> Result<Vec<(String, String)>, V1Error> {
    element
        .attributes()
        .map(|attribute| {
            let attribute =
                attribute.map_err(|e| V1Error::format(format!("an XML attribute is malformed: {e}")))?;
            let name = std::str::from_utf8(attribute.key.local_name().as_ref())
                .map_err(|_| V1Error::format("an XML attribute name is not UTF-8".into()))?
                .to_string();
            let value = attribute
                .unescape_value()
                .map_err(|e| V1Error::format(format!("an XML attribute value is malformed: {e}")))?;
            Ok((name, value.into_owned()))
        })
        .collect()
}

/// `&amp;`-style predefined entities and `&#65;`/`&#x41;` character references.
fn resolve_reference(name: &str) -> Option<String> {
    if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix('x').or_else(|| number.strip_prefix('X')) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        return char::from_u32(code).map(String::from);
    }
    quick_xml::escape::resolve_predefined_entity(name).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_children_and_resolves_predefined_entities() {
        let params = parameters(b"<?xml version=\"1.0\"?><LogonRequest><APIKey>k&amp;1</APIKey><Password><![CDATA[p<w]]></Password></LogonRequest>").unwrap();
        assert_eq!(params, vec![("APIKey".into(), "k&1".into()), ("Password".into(), "p<w".into())]);
    }

    #[test]
    fn refuses_dtds_unknown_entities_and_broken_documents() {
        let laughs = b"<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]><r><a>&lol2;</a></r>";
        assert_eq!(parameters(laughs).unwrap_err().code, 3);
        let external = b"<!DOCTYPE r [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><r><a>&xxe;</a></r>";
        assert_eq!(parameters(external).unwrap_err().code, 3);
        assert_eq!(parameters(b"<r><a>&xxe;</a></r>").unwrap_err().code, 3);
        assert_eq!(parameters(b"<r><a>1</r>").unwrap_err().code, 3);
        assert_eq!(parameters(b"<r><a>1</a>").unwrap_err().code, 3);
        let deep = format!("{}{}", "<a>".repeat(20), "</a>".repeat(20));
        assert_eq!(parameters(deep.as_bytes()).unwrap_err().code, 3);
    }
}
