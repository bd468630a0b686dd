//! Request and response values shared by the gateway and the handlers (no I/O here).

use serde_json::{Map, Value};

use crate::model::User;

/// The HTTP method of a CGI request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Delete,
    Other,
}

impl Method {
    pub fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }

    /// GET and HEAD read; everything else may change state.
    pub fn is_safe(self) -> bool {
        matches!(self, Method::Get | Method::Head)
    }
}

/// Why the request body could not be had; reported only if a handler asks for the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    BadLength,
    Unreadable,
}

/// A parsed CGI request: what the handlers see.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// PATH_INFO split on `/`, without empty segments.
    pub path: Vec<String>,
    pub query: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: Result<Vec<u8>, BodyError>,
    pub meta: Meta,
    /// Why the request could not be parsed; answered instead of running the handler.
    pub problem: Option<ApiError>,
}

/// The request headers and server facts that identity and origin checks need.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub remote_user: Option<String>,
    pub cookie: Option<String>,
    pub origin: Option<String>,
    pub sec_fetch_site: Option<String>,
    /// `Sec-Fetch-Mode` (`navigate` for a link, a typed address or a form; `cors` or
    /// `same-origin` for a script's request): browsers send it on https and localhost only.
    pub sec_fetch_mode: Option<String>,
    /// `X-Requested-With`: a header no navigation can carry (see [`crate::csrf::from_page_script`]).
    pub requested_with: Option<String>,
    /// `HTTP_HOST`, else `SERVER_NAME[:SERVER_PORT]`.
    pub host: Option<String>,
    pub https: bool,
    /// The client's address: `REMOTE_ADDR`, or what a trusted proxy forwarded.
    pub remote_addr: Option<String>,
    /// `Forwarded`, `X-Forwarded-For`, `X-Forwarded-Proto` as received; believed only
    /// from a trusted proxy (see [`crate::proxy`]).
    pub forwarding: crate::proxy::ForwardingHeaders,
    /// `X-Piggyback-Ack`: what this client showed. Its presence says the client
    /// acknowledges, so unacknowledged batches may be announced to it again.
    pub ack: Option<Ack>,
    /// `If-None-Match`, as sent: only `messages/status` answers it.
    pub if_none_match: Option<String>,
}

/// The value of `X-Piggyback-Ack` (docs/API.md, *Acknowledgements*).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// `N`: the first form, "batch N and every earlier one" (0: none yet). An answer
    /// lost in transit before a later one was shown is acknowledged with it.
    UpTo(i64),
    /// `shown=N,M`: exactly these batches were shown (an empty list: none since the
    /// last acknowledgement). A lost answer's batch stays unacknowledged.
    Shown(Vec<i64>),
}

/// Most batches one `shown=` list may name.
pub const MAX_ACK_BATCHES: usize = 64;

impl Ack {
    /// The acknowledgement watermark after this acknowledgement, for a mailbox whose
    /// watermark is `acked` and whose last batch is `last`: every batch up to it needs
    /// no second announcement. A `shown=` list moves it only when it names every batch
    /// after the watermark (batches it leaves out may be lost answers).
    pub fn watermark(&self, acked: i64, last: i64) -> i64 {
        match self {
            Ack::UpTo(batch) if *batch > acked && *batch <= last => *batch,
            Ack::Shown(shown) if last > acked && (acked + 1..=last).all(|b| shown.contains(&b)) => last,
            _ => acked,
        }
    }

    /// Parses a header value; `None` when it is malformed.
    pub fn parse(value: &str) -> Option<Ack> {
        let number = |v: &str| -> Option<i64> {
            let v = v.trim();
            (!v.is_empty() && v.len() <= 18 && v.bytes().all(|b| b.is_ascii_digit())).then(|| v.parse().ok())?
        };
        let value = value.trim();
        if value.is_empty() {
            return Some(Ack::UpTo(0));
        }
        match value.strip_prefix("shown=") {
            None => number(value).map(Ack::UpTo),
            Some(list) if list.trim().is_empty() => Some(Ack::Shown(Vec::new())),
            Some(list) => {
                let batches: Option<Vec<i64>> = list.split(',').map(number).collect();
                batches.filter(|b| b.len() <= MAX_ACK_BATCHES).map(Ack::Shown)
            }
        }
    }
}

impl Request {
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn path_segments(&self) -> Vec<&str> {
        self.path.iter().map(String::as_str).collect()
    }

    /// The body as JSON of type `T`: 413/415/400 as fits.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        let body = self.raw_json_body()?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("empty_body", "a JSON object is required"));
        }
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request("malformed_json", format!("the body is not valid JSON for this request: {e}"))
        })
    }

    /// Checks length and type of a body that may be empty (`POST /messages/ID/read`).
    pub fn ensure_acceptable_body(&self) -> Result<(), ApiError> {
        let body = self.raw_json_body()?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        serde_json::from_slice::<Value>(body)
            .map(|_| ())
            .map_err(|e| ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}")))
    }

    fn raw_json_body(&self) -> Result<&[u8], ApiError> {
        let body = match &self.body {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return Err(ApiError::new(
                    413,
                    "body_too_large",
                    format!("the body is larger than {} bytes", crate::config::MAX_BODY_BYTES),
                ));
            }
            Err(BodyError::BadLength) => {
                return Err(ApiError::bad_request("bad_content_length", "Content-Length is not a number"));
            }
            Err(BodyError::Unreadable) => {
                return Err(ApiError::bad_request("incomplete_body", "the body ended before Content-Length bytes"));
            }
        };
        let json_type = self.content_type.as_deref().is_some_and(|t| {
            let essence = t.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/json")
        });
        // `fetch(url, {method: "POST"})` sends neither body nor type: fine for the
        // endpoints that take no body. Any body, and any declared type, must be JSON
        // (a cross-site HTML form always declares one).
        let nothing_declared = body.is_empty() && self.content_type.as_deref().is_none_or(str::is_empty);
        if !json_type && !nothing_declared {
            return Err(ApiError::new(
                415,
                "unsupported_media_type",
                "requests that change state need Content-Type: application/json",
            ));
        }
        if std::str::from_utf8(body).is_err() {
            return Err(ApiError::bad_request("invalid_utf8", "the body is not valid UTF-8"));
        }
        Ok(body)
    }
}

/// A handler's answer before the gateway attaches `site_messages` and serializes it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Map<String, Value>,
    pub headers: Vec<(&'static str, String)>,
    /// What the reply does to the caller's session: the gateway announces messages to
    /// the user the caller is once this reply has arrived.
    pub session: SessionChange,
    /// What the operator's error log should say about this reply (never sent to the
    /// client): the gateway writes it, once per request.
    pub log: Option<String>,
    /// The reply reports counts and announces nothing (`messages/status` asked by
    /// something that is not the page's script, such as a link from another site).
    pub counts_only: bool,
}

/// A login or logout that a reply carries out (the `session` program's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SessionChange {
    /// The request's own identity stands.
    #[default]
    Unchanged,
    /// Logged in as this user: the reply already announces this user's messages.
    Started(User),
    /// Logged out: the reply announces nobody's messages.
    Ended,
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply::with_status(200, body)
    }

    pub fn created(body: Value) -> Reply {
        Reply::with_status(201, body)
    }

    pub fn with_status(status: u16, body: Value) -> Reply {
        let body = match body {
            Value::Object(map) => map,
            other => {
                let mut map = Map::new();
                map.insert("result".into(), other);
                map
            }
        };
        Reply { status, body, headers: Vec::new(), session: SessionChange::Unchanged, log: None, counts_only: false }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn session(mut self, change: SessionChange) -> Reply {
        self.session = change;
        self
    }
}

/// An error answer: `{"error": {"code", "message"}}` with a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub headers: Vec<(&'static str, String)>,
    /// What the operator's error log should say (never sent to the client); the
    /// gateway writes it once per request.
    pub log: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), headers: Vec::new(), log: None }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(404, "not_found", format!("no such {what}"))
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "unauthorized", "log in first: no valid session")
    }

    pub fn method_not_allowed(allow: &'static str) -> ApiError {
        ApiError::new(405, "method_not_allowed", format!("this resource allows {allow}")).header("Allow", allow)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "unavailable", message).header("Retry-After", "1")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "internal_error", message)
    }

    /// A setting is missing or wrong: the answer says only that; the error log names it.
    pub fn misconfigured() -> ApiError {
        ApiError::new(500, "misconfigured", "the server is misconfigured; its error log names the setting")
    }

    /// Adds a line for the error log.
    pub fn log(mut self, line: impl Into<String>) -> ApiError {
        self.log = Some(line.into());
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    pub fn into_reply(self) -> Reply {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut reply = Reply::with_status(self.status, body);
        reply.headers = self.headers;
        reply.log = self.log;
        reply
    }
}

/// The reason phrase for the statuses this suite uses.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}
