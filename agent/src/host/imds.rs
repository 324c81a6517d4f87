//! IMDSv2 client: instance type, placement group and availability zone.
//!
//! Every request has a connect and read deadline (default 1 s) and is tried at most twice. A 401 means
//! the session token expired (or was revoked): a new token is fetched once and the request repeated.
//! Proxies from the environment are never used: IMDS is link-local. A reply is read up to
//! [`MAX_REPLY_BYTES`] and must be one line of UTF-8 text ([`reply_value`]); an instance type must
//! look like one.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::FormatError;

/// Token lifetime asked for. nodeprep only needs a token for a few requests.
const TOKEN_TTL_SECONDS: u32 = 300;
/// The longest reply body nodeprep reads: every value it asks for (token, instance type, placement
/// group, zone) is far shorter.
pub const MAX_REPLY_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ImdsError {
    #[error("IMDS at {endpoint} did not answer {what} within {timeout_ms} ms (tried twice)")]
    Timeout { endpoint: String, what: &'static str, timeout_ms: u64 },
    #[error("IMDS at {endpoint} is unreachable for {what}: {cause}")]
    Unreachable { endpoint: String, what: &'static str, cause: String },
    #[error("IMDS at {endpoint} answered {what} with HTTP {status}")]
    Status { endpoint: String, what: &'static str, status: u16 },
    #[error("IMDS at {endpoint} answered {what} with {problem}")]
    Reply { endpoint: String, what: &'static str, problem: String },
}

/// True when `t` looks like an EC2 instance type: `family.size` of lowercase letters, digits and `-`.
pub fn is_instance_type(t: &str) -> bool {
    let mut parts = t.split('.');
    let ok = |s: Option<&str>| {
        s.is_some_and(|s| {
            !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// The value in an IMDS reply body: at most [`MAX_REPLY_BYTES`] of UTF-8 text without control
/// characters, surrounding whitespace trimmed. `Err` describes the reply.
pub fn reply_value(body: &[u8]) -> Result<String, FormatError> {
    if body.len() > MAX_REPLY_BYTES {
        return Err(FormatError(format!("a reply of more than {MAX_REPLY_BYTES} bytes")));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        FormatError(format!(
            "a reply that is not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    let value = text.trim();
    if value.chars().any(char::is_control) {
        return Err(FormatError(format!("{:?}, which is not one line of text", shorten(value))));
    }
    Ok(value.to_string())
}

/// `s` cut to 64 characters for a message.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// What IMDS says about this instance. `None` fields were not available (e.g. no placement group).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImdsFacts {
    pub instance_type: Option<String>,
    pub placement_group: Option<String>,
    pub availability_zone: Option<String>,
}

pub struct ImdsClient {
    endpoint: String,
    timeout: Duration,
    client: reqwest::Client,
}

impl ImdsClient {
    pub fn new(endpoint: &str, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .timeout(timeout * 2)
            .build()
            .expect("a plain HTTP client always builds");
        ImdsClient { endpoint: endpoint.trim_end_matches('/').to_string(), timeout, client }
    }

    fn timeout_ms(&self) -> u64 {
        self.timeout.as_millis() as u64
    }

    /// Sends a request, retrying once on a timeout or connection error.
    async fn send(
        &self,
        what: &'static str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ImdsError> {
        let mut last = None;
        for attempt in 1..=2 {
            let started = Instant::now();
            match make().send().await {
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    tracing::debug!(what, attempt, elapsed_ms = started.elapsed().as_millis() as u64, error = %e, "IMDS request failed");
                    last = Some(e);
                }
            }
        }
        let e = last.expect("two attempts made");
        if e.is_timeout() {
            Err(ImdsError::Timeout {
                endpoint: self.endpoint.clone(),
                what,
                timeout_ms: self.timeout_ms(),
            })
        } else {
            Err(ImdsError::Unreachable {
                endpoint: self.endpoint.clone(),
                what,
                cause: crate::error_chain(&e),
            })
        }
    }

    /// Reads a reply body, at most one byte past [`MAX_REPLY_BYTES`], and returns its value.
    async fn body(
        &self,
        what: &'static str,
        mut resp: reqwest::Response,
    ) -> Result<String, ImdsError> {
        let mut bytes = Vec::new();
        while bytes.len() <= MAX_REPLY_BYTES {
            match resp.chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(
                    &chunk[..chunk.len().min(MAX_REPLY_BYTES + 1 - bytes.len())],
                ),
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return Err(ImdsError::Timeout {
                        endpoint: self.endpoint.clone(),
                        what,
                        timeout_ms: self.timeout_ms(),
                    })
                }
                Err(e) => {
                    return Err(ImdsError::Unreachable {
                        endpoint: self.endpoint.clone(),
                        what,
                        cause: crate::error_chain(&e),
                    })
                }
            }
        }
        reply_value(&bytes).map_err(|FormatError(problem)| ImdsError::Reply {
            endpoint: self.endpoint.clone(),
            what,
            problem,
        })
    }

    /// PUT /latest/api/token.
    pub async fn token(&self) -> Result<String, ImdsError> {
        let url = format!("{}/latest/api/token", self.endpoint);
        let what = "the token request";
        let resp = self
            .send(what, || {
                self.client
                    .put(&url)
                    .header("X-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS.to_string())
            })
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(ImdsError::Status {
                endpoint: self.endpoint.clone(),
                what,
                status: resp.status().as_u16(),
            });
        }
        self.body(what, resp).await
    }

    /// GET a metadata path. 404 is `Ok(None)`. A 401 refreshes `token` once.
    pub async fn get(
        &self,
        token: &mut String,
        path: &'static str,
    ) -> Result<Option<String>, ImdsError> {
        let url = format!("{}/latest/meta-data/{path}", self.endpoint);
        for refreshed in [false, true] {
            let tok = token.clone();
            let resp = self
                .send(path, || {
                    self.client.get(&url).header("X-aws-ec2-metadata-token", tok.as_str())
                })
                .await?;
            match resp.status() {
                StatusCode::OK => return Ok(Some(self.body(path, resp).await?)),
                StatusCode::NOT_FOUND => return Ok(None),
                StatusCode::UNAUTHORIZED if !refreshed => {
                    tracing::debug!(path, "IMDS token rejected (401); fetching a new one");
                    *token = self.token().await?;
                }
                s => {
                    return Err(ImdsError::Status {
                        endpoint: self.endpoint.clone(),
                        what: path,
                        status: s.as_u16(),
                    })
                }
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Instance type, placement group and availability zone.
    pub async fn facts(&self) -> Result<ImdsFacts, ImdsError> {
        let started = Instant::now();
        let mut token = self.token().await?;
        let instance_type = self.get(&mut token, "instance-type").await?;
        if let Some(t) = instance_type.as_deref().filter(|t| !is_instance_type(t)) {
            let problem = format!("{:?}, which is not an instance type", shorten(t));
            return Err(ImdsError::Reply {
                endpoint: self.endpoint.clone(),
                what: "instance-type",
                problem,
            });
        }
        let placement_group =
            self.get(&mut token, "placement/group-name").await?.filter(|s| !s.is_empty());
        let availability_zone = self.get(&mut token, "placement/availability-zone").await?;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            ?instance_type,
            ?placement_group,
            "IMDS answered"
        );
        Ok(ImdsFacts { instance_type, placement_group, availability_zone })
    }

    /// [`ImdsClient::facts`] from synchronous code: runs a small runtime of its own.
    pub fn facts_blocking(&self) -> Result<ImdsFacts, ImdsError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime builds");
        rt.block_on(self.facts())
    }
}
