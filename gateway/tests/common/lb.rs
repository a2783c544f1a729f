//! nginx in front of test gateways (`scripts/lb.sh`): the CDN and the load
//! balancer of the production shape, started in a run dir of its own on a
//! free loopback port and stopped (`lb.sh down`) when dropped.

use super::{Reply, Server, ADMIN_TOKEN};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const LB_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/lb.sh");

/// A running nginx (`lb.sh up`); `lb.sh down` on drop.
pub struct Nginx {
    pub run_dir: PathBuf,
    /// `127.0.0.1:<port>`.
    pub listen: String,
    pub http: Http,
    _run: tempfile::TempDir,
    running: bool,
}

impl Nginx {
    /// nginx serving `cdn` and balancing over `gateways`. A free port is
    /// picked, then bound by nginx: if another process took it in between,
    /// a new one is tried (3 times at most).
    pub fn start(cdn: &Path, gateways: &[&Server]) -> Nginx {
        let upstreams: Vec<&str> = gateways.iter().map(|g| address(g)).collect();
        Self::start_on(cdn, &upstreams)
    }

    /// nginx balancing over `upstreams` (`127.0.0.1:<port>`, gateways or
    /// stand-ins).
    pub fn start_on(cdn: &Path, upstreams: &[&str]) -> Nginx {
        let run = tempfile::tempdir().expect("run dir");
        let run_dir = run.path().join("nginx");
        let mut last = String::new();
        for _ in 0..3 {
            let listen = format!("127.0.0.1:{}", free_port());
            let mut cmd = Command::new("bash");
            cmd.args([LB_SCRIPT, "up", "--listen", &listen, "--cdn"])
                .arg(cdn)
                .arg("--run-dir")
                .arg(&run_dir);
            for u in upstreams {
                cmd.args(["--gateway", u]);
            }
            let out = cmd.output().expect("run scripts/lb.sh");
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() {
                eprintln!("{}", last.trim_end());
                return Nginx {
                    http: Http::new(&format!("http://{listen}"), None),
                    listen,
                    run_dir,
                    _run: run,
                    running: true,
                };
            }
            if !last.contains("Address already in use") {
                break;
            }
        }
        panic!("scripts/lb.sh up failed:\n{last}");
    }

    /// Another client of this nginx (for tasks: `Http` can be shared).
    pub fn client(&self) -> Http {
        Http::new(&self.http.base, None)
    }

    /// A client whose connections to nginx leave from `local` (any
    /// 127.x.x.x: nginx then sees that client address).
    pub fn client_from(&self, local: std::net::IpAddr) -> Http {
        Http::new(&self.http.base, Some(local))
    }

    /// `lb.sh down` (graceful, bounded); the access log is complete after it.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let out = Command::new("bash")
            .args([LB_SCRIPT, "down", "--run-dir"])
            .arg(&self.run_dir)
            .output()
            .expect("run scripts/lb.sh down");
        assert!(
            out.status.success(),
            "lb.sh down: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.run_dir.join("logs").join("access.log")).unwrap_or_default()
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.run_dir.join("logs").join("error.log")).unwrap_or_default()
    }
}

impl std::ops::Deref for Nginx {
    type Target = Http;
    fn deref(&self) -> &Http {
        &self.http
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if self.running {
            self.running = false;
            let _ = Command::new("bash")
                .args([LB_SCRIPT, "down", "--run-dir"])
                .arg(&self.run_dir)
                .output();
        }
    }
}

/// A gateway's `host:port`, as nginx's upstream lists it.
pub fn address(g: &Server) -> &str {
    g.base.strip_prefix("http://").expect("http base")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// An HTTP client of one base URL (the test's buyer or operator).
pub struct Http {
    pub base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    fn new(base: &str, local: Option<std::net::IpAddr>) -> Http {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_local_address(local);
        Http {
            base: base.to_string(),
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(512)
                .build(connector),
        }
    }

    /// One request; `headers` are added as given.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(40), self.client.request(req))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within 40 s"))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("response body")
            .to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        self.request("GET", path, &headers, Bytes::new()).await
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(auth.iter().map(|a| ("authorization", a.as_str())));
        self.request(
            "POST",
            path,
            &headers,
            serde_json::to_vec(body).expect("json"),
        )
        .await
    }

    pub async fn admin_get(&self, path: &str) -> Reply {
        self.get(path, Some(ADMIN_TOKEN)).await
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> Reply {
        self.post_json(path, Some(ADMIN_TOKEN), body).await
    }

    pub async fn grab(&self, campaign: &str, token: &str) -> Reply {
        self.post_json(
            &format!("/api/v1/campaigns/{campaign}/grab"),
            Some(token),
            &json!({}),
        )
        .await
    }

    /// Buyer tokens for `users`, issued by the admin endpoint.
    pub async fn tokens(&self, users: &[String]) -> Vec<String> {
        let r = self
            .admin_post(
                "/admin/v1/tokens",
                &json!({ "user_ids": users, "ttl_s": 3600 }),
            )
            .await;
        assert_eq!(
            r.status,
            200,
            "tokens: {}",
            String::from_utf8_lossy(&r.body)
        );
        let map = r.json()["tokens"].clone();
        users
            .iter()
            .map(|u| map[u].as_str().expect("token for user").to_string())
            .collect()
    }
}
