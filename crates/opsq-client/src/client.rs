use std::{fmt, time::Duration};

use opsq_domain::JobStatus;
use reqwest::{header, Method, StatusCode, Url};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    types::{
        CancelRequest, ClaimResponse, CompleteRequest, FailBody, HeartbeatRequest, LoginRequest, ReleaseBody,
        StatusResponse,
    },
    CancelOutcome, ClaimRequest, ClaimedJob, ClientError, FailRequest, HeartbeatAck, Job, JobList,
    JobProgress, JobQuery, LoginResponse, ReportRequest, ReportResponse, Result, Submission, SubmitRequest,
};

/// How long to wait for a TCP/TLS connection: long enough for a busy server, short
/// enough that a wrong address fails before a person gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The ceiling for one whole call, so no call hangs forever on a stuck server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A handle on one opsq server, optionally holding a bearer token.
///
/// Cheap to clone (the connection pool is shared), so concurrent pollers can each hold
/// one. Every method maps failures to [`ClientError`].
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

/// Hand-written so the token never lands in a log or a panic message.
impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// A client for the server at `server`, e.g. `http://127.0.0.1:8080`.
    ///
    /// A bare `host:port` is taken as `http://host:port`, since that is what people
    /// type; any other scheme than http or https is refused up front rather than on
    /// the first call.
    pub fn new(server: &str) -> Result<Self> {
        let base = parse_server_url(server)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("opsq-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| ClientError::Transport {
                url: base.to_string(),
                message: format!("could not set up HTTP: {err}"),
            })?;
        Ok(Self { http, base, token: None })
    }

    /// The same client, sending `token` as `Authorization: Bearer` on every call.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The server's base URL, normalised (scheme added, trailing slash).
    pub fn server(&self) -> &str {
        self.base.as_str()
    }

    /// `POST /v2/authentication/login`: trades a user name and password for a token.
    ///
    /// Bad credentials come back as [`ClientError::Api`] with status 400 and the
    /// server's message; too many failures as 429.
    pub async fn login(&self, username: &str, password: &str) -> Result<LoginResponse> {
        let url = self.url(&["v2", "authentication", "login"]);
        let body = LoginRequest { username, password };
        let (_, login) = self.send(Method::POST, url, Some(&body), None).await?;
        Ok(login)
    }

    /// `GET /v2/operations/{alias}/status/{id}`: the CLC v2 status word of a job.
    pub async fn status(&self, alias: &str, status_id: &str) -> Result<JobStatus> {
        let url = self.url(&["v2", "operations", alias, "status", status_id]);
        let (_, body) = self.send::<(), StatusResponse>(Method::GET, url, None, None).await?;
        Ok(body.status)
    }

    /// `GET /v2/operations/{alias}/jobs/{id}`: the whole job, with progress and history.
    pub async fn job(&self, alias: &str, status_id: &str) -> Result<Job> {
        let url = self.url(&["v2", "operations", alias, "jobs", status_id]);
        let (_, job) = self.send::<(), Job>(Method::GET, url, None, None).await?;
        Ok(job)
    }

    /// `POST /v2/operations/{alias}/jobs`: queues a job.
    ///
    /// With an `idempotency_key`, submitting the same body again returns the first job
    /// (`replayed` set) instead of a second one, so a retry after a lost answer is safe;
    /// reusing the key with a different body is a 409.
    pub async fn submit(
        &self,
        alias: &str,
        request: &SubmitRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Submission> {
        let url = self.url(&["v2", "operations", alias, "jobs"]);
        let (status, job) = self.send(Method::POST, url, Some(request), idempotency_key).await?;
        Ok(Submission { job, replayed: status == StatusCode::OK })
    }

    /// `POST /v2/operations/{alias}/jobs/{id}/cancel`: asks for a job to stop.
    ///
    /// A waiting job ends `failed` at once ([`CancelOutcome::Cancelled`]); a running
    /// one's worker is told at its next heartbeat ([`CancelOutcome::Requested`]). A job
    /// that already ended, or whose outcome is unknown, is a 409 [`ClientError::Api`]
    /// whose message says which.
    pub async fn cancel(&self, alias: &str, status_id: &str, reason: Option<&str>) -> Result<CancelOutcome> {
        let url = self.url(&["v2", "operations", alias, "jobs", status_id, "cancel"]);
        let body = CancelRequest { reason };
        let (status, job) = self.send(Method::POST, url, Some(&body), None).await?;
        Ok(if status == StatusCode::ACCEPTED {
            CancelOutcome::Requested(job)
        } else {
            CancelOutcome::Cancelled(job)
        })
    }

    /// `GET /v2/operations/{alias}/jobs`: one page of the jobs of `alias` and its
    /// sub-accounts, newest first.
    pub async fn list_jobs(&self, alias: &str, query: &JobQuery) -> Result<JobList> {
        let url = self.list_url(alias, query);
        let (_, list) = self.send::<(), JobList>(Method::GET, url, None, None).await?;
        Ok(list)
    }

    /// The list URL with the query's filters as parameters (none when unset).
    fn list_url(&self, alias: &str, query: &JobQuery) -> Url {
        let mut url = self.url(&["v2", "operations", alias, "jobs"]);
        {
            let mut pairs = url.query_pairs_mut();
            if !query.statuses.is_empty() {
                let statuses: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
                pairs.append_pair("status", &statuses.join(","));
            }
            if let Some(kind) = &query.kind {
                pairs.append_pair("kind", kind);
            }
            if let Some(limit) = query.limit {
                pairs.append_pair("limit", &limit.to_string());
            }
            if let Some(before) = query.before {
                pairs.append_pair("before", &before.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        url
    }

    /// `POST /v2/workers/claim`: takes up to `limit` waiting jobs of the given kinds,
    /// each with a lease, waiting up to `wait_seconds` for one to appear. An empty list
    /// means none came within the wait. Needs the `Worker` role.
    pub async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>> {
        let url = self.url(&["v2", "workers", "claim"]);
        let (_, body) = self.send::<_, ClaimResponse>(Method::POST, url, Some(request), None).await?;
        Ok(body.jobs)
    }

    /// `POST /v2/workers/jobs/{id}/heartbeat`: renews the attempt's lease, optionally
    /// reporting progress, and learns whether a cancel was requested.
    ///
    /// A 409 [`ClientError::Api`] means the lease is lost (expired, rescued, or the job
    /// ended): stop the attempt and report nothing for it.
    pub async fn heartbeat(
        &self,
        status_id: &str,
        lease_token: &str,
        progress: Option<&JobProgress>,
    ) -> Result<HeartbeatAck> {
        let url = self.url(&["v2", "workers", "jobs", status_id, "heartbeat"]);
        let body = HeartbeatRequest { lease_token, progress };
        let (_, ack) = self.send(Method::POST, url, Some(&body), None).await?;
        Ok(ack)
    }

    /// `POST /v2/workers/jobs/{id}/complete`: ends the attempt `succeeded` with
    /// `result`. 409 when the lease is lost (the outcome was not recorded).
    pub async fn complete(
        &self,
        status_id: &str,
        lease_token: &str,
        result: &serde_json::Value,
    ) -> Result<Job> {
        let url = self.url(&["v2", "workers", "jobs", status_id, "complete"]);
        let body = CompleteRequest { lease_token, result };
        let (_, job) = self.send(Method::POST, url, Some(&body), None).await?;
        Ok(job)
    }

    /// `POST /v2/workers/jobs/{id}/fail`: ends the attempt as failed; a retryable
    /// failure makes the job `resumed` while attempts remain. 409 when the lease is
    /// lost (the outcome was not recorded).
    pub async fn fail(&self, status_id: &str, lease_token: &str, failure: &FailRequest) -> Result<Job> {
        let url = self.url(&["v2", "workers", "jobs", status_id, "fail"]);
        let body = FailBody { lease_token, failure };
        let (_, job) = self.send(Method::POST, url, Some(&body), None).await?;
        Ok(job)
    }

    /// `POST /v2/workers/jobs/{id}/release`: hands back a job claimed and never
    /// started (say, the worker is shutting down): it is `resumed`, due at once, and
    /// the attempt does not count, where a retryable failure would use one up. 409
    /// when the lease is lost. Servers older than this call answer 404.
    pub async fn release(&self, status_id: &str, lease_token: &str) -> Result<Job> {
        let url = self.url(&["v2", "workers", "jobs", status_id, "release"]);
        let body = ReleaseBody { lease_token };
        let (_, job) = self.send(Method::POST, url, Some(&body), None).await?;
        Ok(job)
    }

    /// `POST /v2/workers/report`: records many outcomes in one call and claims jobs
    /// for the slots they freed. Each outcome is answered on its own (a lost lease is
    /// that outcome's `recorded: false` with 409, not the call's error). Servers older
    /// than this call answer 404.
    pub async fn report(&self, request: &ReportRequest) -> Result<ReportResponse> {
        let url = self.url(&["v2", "workers", "report"]);
        let (_, answer) = self.send(Method::POST, url, Some(request), None).await?;
        Ok(answer)
    }

    /// The base URL with `segments` appended, each percent-encoded, so an id or alias
    /// containing `/` or `?` cannot reach another route.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends one request and decodes a success body as `T`; any other answer becomes
    /// the matching [`ClientError`].
    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
        idempotency_key: Option<&str>,
    ) -> Result<(StatusCode, T)> {
        let shown = url.to_string();
        let mut request = self.http.request(method, url).header(header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|err| ClientError::transport(&shown, &err))?;
        let status = response.status();
        let text = response.text().await.map_err(|err| ClientError::transport(&shown, &err))?;
        if !status.is_success() {
            return Err(ClientError::from_response(status.as_u16(), &text));
        }
        let decoded = serde_json::from_str(&text)
            .map_err(|err| ClientError::Decode(format!("{err} in the answer to {shown} ({status})")))?;
        Ok((status, decoded))
    }
}

/// Accepts what people type for a server and returns an http(s) base URL.
fn parse_server_url(server: &str) -> Result<Url> {
    let invalid =
        |message: &str| ClientError::InvalidUrl { url: server.to_string(), message: message.to_string() };
    let trimmed = server.trim();
    if trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    let with_scheme = if trimmed.contains("://") { trimmed.to_string() } else { format!("http://{trimmed}") };
    let url = Url::parse(&with_scheme).map_err(|err| invalid(&err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("only http:// and https:// are supported"));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(invalid("it has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_normalised_or_refused_with_a_reason() {
        let url = |raw: &str| parse_server_url(raw).map(|u| u.to_string());
        assert_eq!(url("127.0.0.1:8080").ok().as_deref(), Some("http://127.0.0.1:8080/"));
        assert_eq!(url(" https://opsq.example/ ").ok().as_deref(), Some("https://opsq.example/"));
        for bad in ["", "ftp://host", "http://", "http://h/?q=1", "http://h/#f", "http://[::1"] {
            let Err(err) = url(bad) else { panic!("{bad:?} should be refused") };
            assert!(matches!(err, ClientError::InvalidUrl { .. }), "{bad:?}: {err:?}");
            assert!(err.to_string().contains("http://127.0.0.1:8080"), "{err}");
        }
    }

    #[test]
    fn paths_are_appended_with_every_segment_encoded() -> Result<()> {
        let client = Client::new("http://h:1/prefix")?;
        let url = client.url(&["v2", "operations", "OPSQ", "jobs", "../x?y"]);
        assert_eq!(url.as_str(), "http://h:1/prefix/v2/operations/OPSQ/jobs/..%2Fx%3Fy");
        let client = Client::new("http://h:1/")?;
        assert_eq!(client.url(&["v2"]).as_str(), "http://h:1/v2");
        Ok(())
    }

    #[test]
    fn list_queries_send_only_the_filters_given() -> Result<()> {
        let client = Client::new("http://h:1")?;
        let url = client.list_url("OPSQ", &JobQuery::default());
        assert_eq!(url.as_str(), "http://h:1/v2/operations/OPSQ/jobs");
        let query = JobQuery {
            statuses: vec![JobStatus::Executing, JobStatus::NotStarted],
            kind: Some("server.*".into()),
            limit: Some(5),
            before: Some(42),
        };
        let url = client.list_url("OPSQ", &query);
        assert_eq!(
            url.as_str(),
            "http://h:1/v2/operations/OPSQ/jobs?status=executing%2CnotStarted&kind=server.*&limit=5&before=42"
        );
        Ok(())
    }

    #[test]
    fn debug_hides_the_token() -> Result<()> {
        let client = Client::new("http://h:1")?.with_token("secret-token");
        assert!(!format!("{client:?}").contains("secret-token"));
        Ok(())
    }

    #[tokio::test]
    async fn connection_refused_is_a_transient_transport_error() -> Result<()> {
        // Bind then drop a listener: its port is then (almost surely) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let client = Client::new(&format!("127.0.0.1:{port}"))?.with_token("t");
        let Err(err) = client.status("OPSQ", "wa1-1").await else { panic!("nothing listens there") };
        assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");
        assert!(err.is_transient());
        let text = err.to_string();
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(text.contains("is it running?"), "{text}");
        Ok(())
    }

    #[tokio::test]
    async fn http_errors_keep_the_server_status_and_message() -> Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let addr = listener.local_addr().map_err(|e| ClientError::Decode(e.to_string()))?;
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.ok()?;
            let mut request = vec![0u8; 4096];
            let read = socket.read(&mut request).await.ok()?;
            let body = r#"{"message":"job wa1-999999 not found"}"#;
            let answer = format!(
                "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.ok()?;
            Some(String::from_utf8_lossy(&request[..read]).into_owned())
        });
        let client = Client::new(&addr.to_string())?.with_token("tok");
        let err = client.job("OPSQ", "wa1-999999").await.err();
        assert_eq!(err, Some(ClientError::Api { status: 404, message: "job wa1-999999 not found".into() }));
        let request = server.await.ok().flatten().unwrap_or_default();
        assert!(request.starts_with("GET /v2/operations/OPSQ/jobs/wa1-999999 "), "{request}");
        assert!(request.to_ascii_lowercase().contains("authorization: bearer tok"), "{request}");
        Ok(())
    }
}
