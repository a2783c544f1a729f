//! A private 3-node Redis Cluster whose clients talk through `CutProxy`s.
//!
//! redis-rs's cluster client learns node addresses from `CLUSTER SLOTS`, so
//! a proxy in front of one node would be bypassed. Here every node announces
//! its proxy's port (`--cluster-announce-port`) while the cluster bus runs
//! directly between the nodes (`--cluster-port`, announced as is), so every
//! client connection goes through a proxy and the nodes still gossip.
//!
//! Loopback only, nothing on disk but a temp dir per node, every wait
//! bounded; the processes are killed when the cluster is dropped.

use super::proxy::CutProxy;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Node {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct PrivateCluster {
    /// One per node, in node order; arm them all to catch a request on
    /// whichever node owns its slot.
    pub proxies: Vec<CutProxy>,
    nodes: Vec<Node>,
}

/// A port nobody listens on now (the OS picks it; a small race with other
/// processes is accepted for a test).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

const NODE_READY: Duration = Duration::from_secs(10);
const CREATE_MAX_SECS: u32 = 30;
const STATE_OK_TRIES: u32 = 150;

impl PrivateCluster {
    pub async fn start() -> Self {
        let mut proxies = Vec::new();
        let mut nodes = Vec::new();
        let mut used = std::collections::HashSet::new();
        for _ in 0..3 {
            let (port, bus) = (0..100)
                .map(|_| (free_port(), free_port()))
                .find(|&(p, b)| p != b && !used.contains(&p) && !used.contains(&b))
                .expect("two distinct free ports within 100 tries");
            used.extend([port, bus]);
            let proxy = CutProxy::start(SocketAddr::from(([127, 0, 0, 1], port))).await;
            let node = start_node(port, bus, proxy.addr.port()).await;
            proxies.push(proxy);
            nodes.push(node);
        }
        let addrs: Vec<String> = proxies
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.addr.port()))
            .collect();
        let create = tokio::task::spawn_blocking(move || {
            Command::new("timeout")
                .arg(CREATE_MAX_SECS.to_string())
                .arg("redis-cli")
                .arg("--cluster")
                .arg("create")
                .args(&addrs)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .stdin(Stdio::null())
                .output()
        })
        .await
        .expect("redis-cli task")
        .expect("redis-cli is required (it comes with redis-server)");
        assert!(
            create.status.success(),
            "redis-cli --cluster create failed: {}\n{}",
            String::from_utf8_lossy(&create.stdout),
            String::from_utf8_lossy(&create.stderr)
        );
        let cluster = Self { proxies, nodes };
        cluster.wait_state_ok().await;
        cluster
    }

    /// Polls every node (directly) until it reports `cluster_state:ok`;
    /// bounded. Nothing announces that state, so this is a poll.
    async fn wait_state_ok(&self) {
        for node in &self.nodes {
            let url = format!("redis://127.0.0.1:{}/", node.port);
            let client = redis::Client::open(url.as_str()).expect("node url");
            let mut ok = false;
            for _ in 0..STATE_OK_TRIES {
                if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                    let info: redis::RedisResult<String> = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async(&mut conn)
                        .await;
                    if info.is_ok_and(|i| i.contains("cluster_state:ok")) {
                        ok = true;
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(ok, "node {} never reported cluster_state:ok", node.port);
        }
    }

    /// A cluster connection that reaches every node through its proxy.
    pub async fn connect(&self) -> redis::cluster_async::ClusterConnection {
        let urls: Vec<String> = self
            .proxies
            .iter()
            .map(|p| format!("redis://{}/", p.addr))
            .collect();
        redis::cluster::ClusterClient::new(urls)
            .expect("cluster urls")
            .get_async_connection()
            .await
            .expect("connect to the private cluster")
    }

    pub fn arm_all(&self, pattern: &[u8], cuts: u32) {
        for p in &self.proxies {
            p.arm(pattern, cuts);
        }
    }

    pub fn disarm_all(&self) {
        for p in &self.proxies {
            p.disarm();
        }
    }

    pub fn cuts(&self) -> u64 {
        self.proxies.iter().map(CutProxy::cuts).sum()
    }
}

async fn start_node(port: u16, bus: u16, announce: u16) -> Node {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &bus.to_string(),
        ])
        .arg("--cluster-config-file")
        .arg(dir.path().join("nodes.conf"))
        .args(["--cluster-node-timeout", "2000"])
        .args(["--cluster-announce-ip", "127.0.0.1"])
        .args(["--cluster-announce-port", &announce.to_string()])
        .args(["--cluster-announce-bus-port", &bus.to_string()])
        .args(["--save", "", "--appendonly", "no", "--logfile", ""])
        .arg("--dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is required (apt-get install redis-server)");
    // The log goes to stdout: wait for the ready line (an event, not a
    // guess), then keep draining so Redis never blocks on a full pipe.
    let out = child.stdout.take().expect("piped stdout");
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut ready = Some(ready_tx);
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if line.contains("Ready to accept connections") {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    let node = Node {
        child,
        port,
        _dir: dir,
    };
    match tokio::time::timeout(NODE_READY, ready_rx).await {
        Ok(Ok(())) => node,
        _ => panic!("redis-server on port {port} did not become ready within {NODE_READY:?}"),
    }
}
