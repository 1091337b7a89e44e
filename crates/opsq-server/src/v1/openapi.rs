//! The v1 API's part of the OpenAPI document, listed by hand: v1 calls reach
//! [`super::dispatch`] through the router's fallback, not through annotated routes.
//! Names come from the v1 code where it has them (root elements, the cookie, the list
//! cap, the v1 statuses); a test compares [`METHODS`] with the methods `dispatch`
//! answers, and the HTTP test checks real replies against these schemas.

use opsq_domain::JobStatus;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, RefBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::xml::XmlBuilder;
use utoipa::openapi::{
    ComponentsBuilder, Content, Deprecated, OpenApi, OpenApiBuilder, PathsBuilder, Ref, RefOr, Required,
    Response, ResponseBuilder,
};

use super::handlers::LIST_CAP;
use super::reply::root_element;
use super::session::COOKIE_NAME;

/// The security scheme of the v1 session cookie.
pub const SESSION_SCHEME: &str = "v1Session";

/// One v1 method: its route, what it reads, and what its reply may hold.
pub struct Method {
    pub area: &'static str,
    pub name: &'static str,
    summary: &'static str,
    description: &'static str,
    /// `(name, required, description)`; `RequestID` and `ItemStatusType` may be
    /// numbers or strings.
    params: &'static [(&'static str, bool, &'static str)],
    /// Whether the session cookie is needed.
    needs_session: bool,
    sets_cookie: bool,
    /// Whether repeated failures are slowed down with `Retry-After`.
    throttled: bool,
    body: ReplyBody,
    /// The `StatusCode`s this method answers besides 0.
    codes: &'static [u32],
}

#[derive(Clone, Copy)]
enum ReplyBody {
    None,
    Details,
    List,
}

const ACCOUNT_ALIAS: (&str, bool, &str) = (
    "AccountAlias",
    false,
    "Act on this account instead of the key's own: it must be the key's account or one below it \
     (StatusCode 5 if it does not exist, 101 if it is outside).",
);

/// The methods `dispatch` answers, in the order of its `match`.
pub const METHODS: [Method; 4] = [
    Method {
        area: "Auth",
        name: "Logon",
        summary: "Log on with an API key; sets the session cookie",
        description: "Keys come from `opsq admin api-key add`. Bad credentials answer StatusCode 100; \
            repeated failures for one key are slowed down (100 with `Retry-After`).",
        params: &[("APIKey", true, "The API key."), ("Password", true, "The key's password.")],
        needs_session: false,
        sets_cookie: true,
        throttled: true,
        body: ReplyBody::None,
        codes: &[2, 3, 100],
    },
    Method {
        area: "Auth",
        name: "Logout",
        summary: "End the session and clear its cookie",
        description: "Answers StatusCode 0 with or without a session.",
        params: &[],
        needs_session: false,
        sets_cookie: true,
        throttled: false,
        body: ReplyBody::None,
        codes: &[2, 3],
    },
    Method {
        area: "Queue",
        name: "GetRequestStatus",
        summary: "Read one request (job) by its number",
        description: "A v2 status id `wa1-123` is `RequestID` 123. An unknown id, or a job outside the \
            caller's account tree, answers StatusCode 900 with no `RequestDetails`. \
            The v2 successor is `GET /v2/operations/{alias}/status/{statusId}`.",
        params: &[
            ("RequestID", true, "The job number, as a JSON number or a string of digits."),
            ACCOUNT_ALIAS,
        ],
        needs_session: true,
        sets_cookie: false,
        throttled: false,
        body: ReplyBody::Details,
        codes: &[2, 3, 5, 100, 101, 900],
    },
    Method {
        area: "Queue",
        name: "ListQueueRequests",
        summary: "List the requests (jobs) of the account and its sub-accounts, newest first",
        description: "The v2 successor is `GET /v2/operations/{alias}/jobs`.",
        params: &[
            (
                "ItemStatusType",
                true,
                "1 All, 2 Pending, 3 Complete, 4 Error (anything else: StatusCode 901).",
            ),
            ACCOUNT_ALIAS,
        ],
        needs_session: true,
        sets_cookie: false,
        throttled: false,
        body: ReplyBody::List,
        codes: &[2, 3, 5, 100, 101, 901],
    },
];

impl Method {
    /// The canonical path, without a format suffix.
    pub fn path(&self) -> String {
        format!("/REST/{}/{}", self.area, self.name)
    }

    fn root(&self) -> &'static str {
        root_element(&self.area.to_ascii_lowercase(), &self.name.to_ascii_lowercase())
    }

    fn reply_schema_name(&self) -> String {
        format!("V1{}", self.root())
    }

    fn parameters_schema_name(&self) -> String {
        format!("V1{}{}Parameters", self.area, self.name)
    }
}

/// What each `StatusCode` means (docs/api-v1.md has the same table).
fn code_meaning(code: u32) -> &'static str {
    match code {
        0 => "success",
        2 => "unknown error: the store is unavailable; retry",
        3 => {
            "invalid request format: malformed JSON or XML, a DTD, a missing or non-numeric parameter, \
              a body over the size limit, an unknown method"
        }
        5 => "the AccountAlias does not exist",
        100 => "not logged on (no or expired session), or a bad APIKey or Password on Logon",
        101 => "access denied: the AccountAlias is outside the key's account tree",
        900 => "invalid RequestID: no such job, or not in the caller's account tree",
        901 => "invalid ItemStatusType",
        _ => "",
    }
}

/// The v1 paths, their schemas and the session cookie's security scheme.
pub(crate) fn document() -> OpenApi {
    let mut paths = PathsBuilder::new();
    let mut components = ComponentsBuilder::new()
        .schema("V1QueueItem", queue_item())
        .schema("V1Reply", reply(&[2, 3], ReplyBody::None, "Response"))
        .security_scheme(
            SESSION_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                COOKIE_NAME,
                "The v1 session, set by Auth/Logon and valid 24 hours on every node sharing the store.",
            ))),
        );
    for method in &METHODS {
        components = components
            .schema(method.reply_schema_name(), reply(method.codes, method.body, method.root()))
            .schema(method.parameters_schema_name(), parameters_object(method));
        paths = paths
            .path(method.path(), path_item(method, false))
            .path(format!("{}/{{format}}", method.path()), path_item(method, true));
    }
    OpenApiBuilder::new().paths(paths).components(Some(components.build())).build()
}

/// The POST and GET of one method's path, with or without the `{format}` suffix.
fn path_item(method: &Method, with_format: bool) -> PathItem {
    let operation = |http: &str| {
        let suffix = if with_format { "WithFormat" } else { "" };
        let mut operation = OperationBuilder::new()
            .tag("v1")
            .operation_id(Some(format!("v1{}{}{suffix}{http}", method.area, method.name)))
            .summary(Some(method.summary))
            .description(Some(format!(
                "{} Routes are case-insensitive, and `//` and a trailing `/` are tolerated. Parameters come \
                 from the query string, a JSON object body, an XML body (the children or attributes of \
                 its root element) or a form; their names are case-insensitive. The reply is XML unless \
                 the `/JSON` suffix, else a JSON `Content-Type`, else an `Accept` of JSON asks for JSON.",
                method.description
            )))
            .deprecated(Some(Deprecated::True))
            .parameters(Some(parameters(method, with_format)))
            .request_body(Some(request_body(method)))
            .response("200", success(method))
            .response("413", too_large());
        if with_format {
            operation = operation.response("404", unknown_route());
        }
        if method.needs_session {
            operation = operation.security(SecurityRequirement::new(SESSION_SCHEME, Vec::<String>::new()));
        }
        operation.build()
    };
    let mut item = PathItem::new(HttpMethod::Post, operation("Post"));
    item.merge_operations(PathItem::new(HttpMethod::Get, operation("Get")));
    item
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn integer() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Integer)
}

/// A parameter's schema: numbers where the code parses a number, strings otherwise.
fn parameter_schema(name: &str) -> ObjectBuilder {
    match name {
        "RequestID" | "ItemStatusType" => {
            ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::Integer, Type::String]))
        }
        _ => string(),
    }
}

fn parameters(method: &Method, with_format: bool) -> Vec<utoipa::openapi::path::Parameter> {
    let mut parameters: Vec<_> = method
        .params
        .iter()
        .map(|(name, _, description)| {
            ParameterBuilder::new()
                .name(*name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(format!("{description} May come from the body instead.")))
                .schema(Some(parameter_schema(name)))
                .build()
        })
        .collect();
    if with_format {
        parameters.insert(
            0,
            ParameterBuilder::new()
                .name("format")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("The reply format, in any case; it wins over the headers."))
                .schema(Some(string().enum_values(Some(["JSON", "XML"]))))
                .build(),
        );
    }
    parameters
}

/// A method's parameters as a body carries them.
fn parameters_object(method: &Method) -> RefOr<Schema> {
    let mut object = ObjectBuilder::new().schema_type(Type::Object).description(Some(
        "The parameters, by name (any case); values may be strings or numbers. In XML, the root element's \
         children (or attributes), with any root name; XML with a DTD is refused (StatusCode 3).",
    ));
    for (name, required, description) in method.params {
        object = object.property(*name, parameter_schema(name).description(Some(*description)));
        if *required {
            object = object.required(*name);
        }
    }
    object.into()
}

fn request_body(method: &Method) -> utoipa::openapi::request_body::RequestBody {
    let schema = Ref::from_schema_name(method.parameters_schema_name());
    let mut body = RequestBodyBuilder::new()
        .description(Some(format!(
            "Optional: the parameters may come from the query string instead. At most {} bytes.",
            crate::state::MAX_BODY_BYTES
        )))
        .required(Some(Required::False));
    for content_type in
        ["application/json", "application/x-www-form-urlencoded", "text/xml", "application/xml"]
    {
        body = body.content(content_type, Content::new(Some(schema.clone())));
    }
    body.build()
}

/// Where a reply's JSON and XML differ, both are said: XML puts every scalar in an
/// attribute.
fn attribute(schema: ObjectBuilder) -> ObjectBuilder {
    schema.xml(Some(XmlBuilder::new().attribute(Some(true)).build()))
}

fn queue_item() -> RefOr<Schema> {
    let statuses = {
        let mut names: Vec<&str> = JobStatus::ALL.iter().map(|s| s.v1_name()).collect();
        names.dedup();
        names
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("One request (a job) in v1 terms: an element with attributes in XML."))
        .property("RequestID", attribute(integer().description(Some("The job number."))))
        .property("RequestTitle", attribute(string()))
        .property("ProgressDesc", attribute(string()))
        .property(
            "StatusDate",
            attribute(string().description(Some(
                "`\\/Date(<ms since the epoch>)\\/` in JSON; `2010-05-28T18:48:49.527` (UTC, no zone) in XML.",
            ))),
        )
        .property("PercentComplete", attribute(integer().minimum(Some(0)).maximum(Some(100))))
        .property(
            "CurrentStatus",
            attribute(string().enum_values(Some(statuses)).description(Some(
                "The v1 name of the job's status; `unknown` shows as `Executing`.",
            ))),
        )
        .property("StepNumber", attribute(integer()))
        .required("RequestID")
        .required("RequestTitle")
        .required("ProgressDesc")
        .required("StatusDate")
        .required("PercentComplete")
        .required("CurrentStatus")
        .required("StepNumber")
        .into()
}

/// A reply's schema: the base fields, the method's body, and the XML root element.
fn reply(codes: &[u32], body: ReplyBody, root: &str) -> RefOr<Schema> {
    let all_codes: Vec<u32> = std::iter::once(0).chain(codes.iter().copied()).collect();
    let code_text: Vec<String> =
        all_codes.iter().map(|code| format!("- {code}: {}", code_meaning(*code))).collect();
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .xml(Some(XmlBuilder::new().name(Some(root.to_string())).build()))
        .description(Some(format!(
            "The reply: JSON, or XML whose root element is `{root}` with the scalars as attributes."
        )));
    match body {
        ReplyBody::None => {}
        ReplyBody::Details => {
            object = object.property(
                "RequestDetails",
                RefBuilder::new()
                    .ref_location_from_schema_name("V1QueueItem")
                    .description(Some("Present when StatusCode is 0."))
                    .build(),
            );
        }
        ReplyBody::List => {
            let items = ArrayBuilder::new()
                .items(RefOr::Ref(Ref::from_schema_name("V1QueueItem")))
                .max_items(Some(LIST_CAP as usize))
                .description(Some(format!(
                    "Present when StatusCode is 0: at most {LIST_CAP}, newest first; `QueueItem` elements in XML."
                )))
                .xml(Some(XmlBuilder::new().name(Some("Requests")).wrapped(Some(true)).build()));
            object = object.property("Requests", items);
        }
    }
    object
        .property("Success", attribute(ObjectBuilder::new().schema_type(Type::Boolean)))
        .property("Message", attribute(string()))
        .property(
            "StatusCode",
            attribute(integer().enum_values(Some(all_codes)).description(Some(code_text.join("\n")))),
        )
        .required("Success")
        .required("Message")
        .required("StatusCode")
        .into()
}

fn header(description: &str) -> Header {
    HeaderBuilder::new().schema(Some(string())).description(Some(description)).build()
}

/// The headers every reply carries, and the ones of some methods.
fn with_headers(mut response: ResponseBuilder, method: Option<&Method>) -> ResponseBuilder {
    response = response
        .header("Deprecation", header("When v1 was deprecated, as RFC 9745 writes it (`@<epoch seconds>`)."))
        .header("Link", header("`<the v2 successor>; rel=\"successor-version\"`."));
    if method.is_some_and(|m| m.sets_cookie) {
        response = response.header(
            "Set-Cookie",
            header(&format!("Logon sets `{COOKIE_NAME}` (HttpOnly, `Path=/`, 24 hours); Logout clears it.")),
        );
    }
    if method.is_some_and(|m| m.throttled) {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(integer()))
                .description(Some("On a throttled Logon: seconds to wait."))
                .build(),
        );
    }
    response
}

fn success(method: &Method) -> Response {
    let schema = Ref::from_schema_name(method.reply_schema_name());
    let response = ResponseBuilder::new()
        .description(
            "Every API-level outcome, success or failure: the outcome is in `StatusCode` (and `Success`).",
        )
        .content("application/json; charset=utf-8", Content::new(Some(schema.clone())))
        .content("text/xml; charset=utf-8", Content::new(Some(schema)));
    with_headers(response, Some(method)).build()
}

fn too_large() -> Response {
    let schema = Ref::from_schema_name("V1Reply");
    let response = ResponseBuilder::new()
        .description(format!(
            "The body is over {} bytes: nothing was done (StatusCode 3).",
            crate::state::MAX_BODY_BYTES
        ))
        .content("application/json; charset=utf-8", Content::new(Some(schema.clone())))
        .content("text/xml; charset=utf-8", Content::new(Some(schema)));
    with_headers(response, None).build()
}

fn unknown_route() -> Response {
    let schema = Ref::from_schema_name("V1Reply");
    let response = ResponseBuilder::new()
        .description(
            "A suffix other than JSON or XML: no such method (StatusCode 3, root element `Response`).",
        )
        .content("application/json; charset=utf-8", Content::new(Some(schema.clone())))
        .content("text/xml; charset=utf-8", Content::new(Some(schema)));
    with_headers(response, None).build()
}
