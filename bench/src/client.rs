//! HTTP/1.1 keep-alive connections to the gateway: one hyper connection per
//! load connection (no pool in between, so a connection's requests go out
//! one after another, as a browser's would), plus a pooled client for the
//! admin calls.

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration;

/// `host:port` and the `Host` header of an `http://` base URL.
pub fn authority(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--url must be http://host:port, not {url:?}"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    if authority.is_empty() {
        bail!("--url has no host: {url:?}");
    }
    Ok(authority.to_string())
}

/// One keep-alive connection.
pub struct Conn {
    authority: String,
    sender: SendRequest<Full<Bytes>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl Conn {
    pub async fn open(authority: &str) -> anyhow::Result<Self> {
        let tcp = tokio::net::TcpStream::connect(authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            authority: authority.to_string(),
            sender,
        })
    }

    /// Sends one request and reads the whole answer; reconnects once when
    /// the server closed the connection (an idle timeout, a refusal that
    /// closes it).
    pub async fn send(&mut self, req: crate::run::Req) -> anyhow::Result<(u16, Bytes)> {
        if self.sender.ready().await.is_err() {
            *self = Self::open(&self.authority).await?;
        }
        let mut b = http::Request::builder()
            .method(req.method)
            .uri(&*req.path)
            .header("host", &self.authority);
        if let Some(token) = &req.token {
            b = b.header("authorization", format!("Bearer {token}"));
        }
        if !req.body.is_empty() {
            b = b.header("content-type", "application/json");
        }
        let resp = self
            .sender
            .send_request(b.body(Full::new(req.body))?)
            .await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// `GET path` as `token`'s buyer; the JSON of a 200, else an error
    /// naming the path, the status and the answer.
    pub async fn get_json(&mut self, path: &str, token: &str) -> anyhow::Result<serde_json::Value> {
        let (status, body) = self
            .send(crate::run::Req {
                method: "GET",
                path: path.into(),
                token: Some(token.to_string()),
                body: Bytes::new(),
            })
            .await?;
        if status != 200 {
            bail!(
                "GET {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))
    }
}

/// The admin API (setup and read-back), pooled.
#[derive(Debug, Clone)]
pub struct Admin {
    base: String,
    token: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Admin {
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))?;
        let resp = tokio::time::timeout(Duration::from_secs(60), self.http.request(req))
            .await
            .with_context(|| format!("{method} {path}: no answer in 60 s"))??;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "{method} {path}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{method} {path}: not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn authority_of_a_base_url() {
        assert_eq!(
            authority("http://127.0.0.1:8080").ok().as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(authority("http://h:1/x/y").ok().as_deref(), Some("h:1"));
        assert!(authority("https://h:1").is_err());
        assert!(authority("http://").is_err());
    }
}
