use std::error::Error as _;

/// Everything that can go wrong talking to an opsq server.
///
/// Each variant keeps what a caller needs to decide what to do next (the HTTP status,
/// the server's own message) and displays as a sentence a CLI user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered 401: there was no token, or it is invalid or expired.
    #[error("not logged in or token expired: run `opsq login` (server said: {message})")]
    Unauthorized {
        /// The server's `message`, or a short description when it sent none.
        message: String,
    },
    /// The server answered with any other error status; `message` is its own text.
    #[error("the server answered {status}{}: {message}", status_hint(*status))]
    Api {
        /// The HTTP status code, e.g. 404 or 503.
        status: u16,
        /// The server's `message` (or `modelState`/`error`, or the raw body, shortened).
        message: String,
    },
    /// No usable HTTP answer: connection refused, DNS failure, TLS error, timeout.
    #[error(
        "could not reach the opsq server at {url}: {message} (is it running? check --server or OPSQ_SERVER)"
    )]
    Transport {
        /// The URL that was being requested.
        url: String,
        /// The cause chain, e.g. "tcp connect error: Connection refused (os error 111)".
        message: String,
    },
    /// The server answered success but with a body this client does not understand,
    /// which usually means client and server versions disagree.
    #[error("could not understand the server's answer: {0} (are client and server the same opsq version?)")]
    Decode(String),
    /// The server address given is not a usable http(s) URL.
    #[error("invalid server URL {url:?}: {message} (expected e.g. http://127.0.0.1:8080)")]
    InvalidUrl {
        /// What the user gave.
        url: String,
        /// Why it was rejected.
        message: String,
    },
}

/// The longest server text kept in an error, so a misbehaving server (or a proxy's
/// HTML page) cannot flood a terminal.
const MAX_MESSAGE_CHARS: usize = 500;

impl ClientError {
    /// Builds the error for a non-success HTTP answer from its status and body.
    ///
    /// Kept free of any HTTP type so the mapping can be tested without a server. The
    /// message is taken the way CLC clients do: `message` (plus any `modelState`
    /// entries), else `error`, else a bare JSON string, else the raw text.
    pub fn from_response(status: u16, body: &str) -> Self {
        let message = extract_message(body).unwrap_or_else(|| {
            let reason = status_hint(status);
            if reason.is_empty() {
                "no details given".to_string()
            } else {
                format!("no details given ({})", reason.trim_start())
            }
        });
        if status == 401 {
            ClientError::Unauthorized { message }
        } else {
            ClientError::Api { status, message }
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Unauthorized { .. } => Some(401),
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying the same call again later may succeed: the server could not be
    /// reached, was overloaded (429, 503) or failed on its side (5xx). Pollers such as
    /// `opsq wait` retry these and give up on the rest.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Api { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }

    /// Whether the server answered 409 Conflict. For the worker calls (heartbeat,
    /// complete, fail) that means the attempt's lease is lost and its outcome must be
    /// dropped; for a cancel, that the job already ended or awaits resolution.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// Wraps a `reqwest` failure, keeping its whole cause chain: reqwest's own text
    /// ("error sending request") says nothing about why.
    pub(crate) fn transport(url: &str, err: &reqwest::Error) -> Self {
        let mut message =
            if err.is_timeout() { "the request timed out".to_string() } else { describe(err).to_string() };
        let mut source = err.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            // hyper's "client error (Connect)" wrapper only repeats what the head says.
            if !message.contains(&text) && !text.starts_with("client error (") {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        ClientError::Transport { url: url.to_string(), message }
    }
}

/// A short head for a `reqwest` failure that does not repeat the URL, which the
/// `Transport` variant already shows; the cause chain follows it.
fn describe(err: &reqwest::Error) -> &'static str {
    if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "the answer was cut short"
    } else if err.is_builder() {
        "the request could not be built"
    } else if err.is_redirect() {
        "too many redirects"
    } else {
        "the request failed"
    }
}

/// The reason phrase for the statuses opsq uses, so "the server answered 404 Not
/// Found" reads naturally; unknown codes get none.
fn status_hint(status: u16) -> &'static str {
    match status {
        400 => " Bad Request",
        401 => " Unauthorized",
        403 => " Forbidden",
        404 => " Not Found",
        409 => " Conflict",
        413 => " Payload Too Large",
        415 => " Unsupported Media Type",
        422 => " Unprocessable Entity",
        429 => " Too Many Requests",
        500 => " Internal Server Error",
        502 => " Bad Gateway",
        503 => " Service Unavailable",
        504 => " Gateway Timeout",
        _ => "",
    }
}

/// Pulls the human text out of an error body, or `None` when the body is empty.
fn extract_message(body: &str) -> Option<String> {
    let body = body.trim();
    if body.is_empty() {
        return None;
    }
    let text = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(serde_json::Value::Object(map)) => {
            let mut parts: Vec<String> = Vec::new();
            if let Some(message) = map.get("message").and_then(|m| m.as_str()) {
                parts.push(message.to_string());
            }
            if let Some(serde_json::Value::Object(state)) = map.get("modelState") {
                for (field, messages) in state {
                    for message in messages.as_array().into_iter().flatten() {
                        if let Some(message) = message.as_str() {
                            if field.is_empty() {
                                parts.push(message.to_string());
                            } else {
                                parts.push(format!("{field}: {message}"));
                            }
                        }
                    }
                }
            }
            if parts.is_empty() {
                if let Some(error) = map.get("error").and_then(|m| m.as_str()) {
                    parts.push(error.to_string());
                }
            }
            if parts.is_empty() {
                body.to_string()
            } else {
                parts.join("; ")
            }
        }
        _ => body.to_string(),
    };
    Some(shorten(&text))
}

fn shorten(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
        short.push('…');
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_keeps_message_and_tells_what_to_do() {
        let err = ClientError::from_response(401, r#"{"message":"token expired"}"#);
        assert_eq!(err, ClientError::Unauthorized { message: "token expired".into() });
        assert_eq!(err.status(), Some(401));
        let text = err.to_string();
        assert!(text.contains("opsq login"), "{text}");
        assert!(text.contains("token expired"), "{text}");
        assert!(!err.is_transient());
    }

    #[test]
    fn api_errors_keep_status_and_server_message() {
        let err = ClientError::from_response(404, r#"{"message":"job wa1-9 not found"}"#);
        assert_eq!(err, ClientError::Api { status: 404, message: "job wa1-9 not found".into() });
        assert_eq!(err.to_string(), "the server answered 404 Not Found: job wa1-9 not found");
        assert!(!err.is_transient());
    }

    #[test]
    fn model_state_error_and_bare_strings_are_read_like_clc_clients_do() {
        let err = ClientError::from_response(
            400,
            r#"{"message":"invalid","modelState":{"body.kind":["bad kind"],"":["whole body"]}}"#,
        );
        let ClientError::Api { message, .. } = err else { panic!("expected Api") };
        assert!(message.starts_with("invalid; "), "{message}");
        assert!(message.contains("body.kind: bad kind"), "{message}");
        assert!(message.contains("; whole body"), "{message}");

        let err = ClientError::from_response(409, r#"{"error":"key reused"}"#);
        assert_eq!(err, ClientError::Api { status: 409, message: "key reused".into() });
        let err = ClientError::from_response(422, r#""just text""#);
        assert_eq!(err, ClientError::Api { status: 422, message: "just text".into() });
        let err = ClientError::from_response(502, "<html>bad gateway</html>");
        assert_eq!(err, ClientError::Api { status: 502, message: "<html>bad gateway</html>".into() });
    }

    #[test]
    fn empty_bodies_still_say_something() {
        let err = ClientError::from_response(404, "");
        assert_eq!(err, ClientError::Api { status: 404, message: "no details given (Not Found)".into() });
        let err = ClientError::from_response(599, "  ");
        assert_eq!(err, ClientError::Api { status: 599, message: "no details given".into() });
    }

    #[test]
    fn long_bodies_are_shortened() {
        let body = "x".repeat(10_000);
        let ClientError::Api { message, .. } = ClientError::from_response(500, &body) else {
            panic!("expected Api")
        };
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn overload_and_server_faults_are_transient() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(ClientError::from_response(status, "").is_transient(), "{status}");
        }
        for status in [400, 401, 403, 404, 409, 413, 415, 422] {
            assert!(!ClientError::from_response(status, "").is_transient(), "{status}");
        }
        assert!(!ClientError::Decode("x".into()).is_transient());
    }
}
