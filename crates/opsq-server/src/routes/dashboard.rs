//! `GET /dashboard`: the operators' web page, its script, its style sheet and its icon.
//!
//! The four files are embedded in the binary, so every server serves the dashboard
//! with nothing to install and no build step. They are static: the page logs in and
//! reads, lists and cancels jobs through the public API, with the bearer token the
//! login answers, so these routes need no token of their own. They are a web page, not
//! an API, and are left out of the OpenAPI document.

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};

const INDEX_HTML: &str = include_str!("../dashboard/index.html");
const APP_JS: &str = include_str!("../dashboard/app.js");
const APP_CSS: &str = include_str!("../dashboard/app.css");
const ICON_SVG: &str = include_str!("../dashboard/icon.svg");

/// What the dashboard may load and where it may be shown: this server's own script,
/// style sheet and API only (no inline code, no other origin), never inside a frame.
/// The page is built for it: its script and style are separate files.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page itself; its script takes over from there.
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `/dashboard/` is the same page; one address keeps the browser's history and
/// bookmarks tidy.
pub async fn page_with_slash() -> Redirect {
    Redirect::permanent("/dashboard")
}

/// The page's script.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// The page's style sheet.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// The page's icon. Named by the page, so browsers do not ask for `/favicon.ico`,
/// which this API server answers with its JSON 404.
pub async fn icon() -> Response {
    asset("image/svg+xml", ICON_SVG)
}

/// One embedded file with the headers every dashboard answer carries: checked again on
/// each load (`no-cache`, so a new server version is picked up at once), never sniffed
/// as another type, never framed, and no referrer sent to the links it holds.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}
