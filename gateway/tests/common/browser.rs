//! Helpers of the browser tests (`browser.rs`, `dashboard.rs`): the tools
//! they need (Debian's headless Chromium, Node.js 20+, playwright-core in
//! `scripts/browser/node_modules`), checked so a missing one fails the test
//! (never skips it), and a bounded run of a script of `scripts/browser/`.

use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const INSTALL_HINT: &str = "run `bash scripts/install-browser.sh` (installs Debian chromium, \
     chromium-driver and playwright-core into scripts/browser/node_modules)";

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn chromium() -> PathBuf {
    std::env::var_os("SECKILL_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Fails (never skips) when the browser, Node.js or playwright-core is missing.
pub fn require_browser_tools() {
    let chromium = chromium();
    assert!(
        chromium.is_file(),
        "{} is missing: {INSTALL_HINT}",
        chromium.display()
    );
    let node = Command::new("node")
        .args(["-p", "process.versions.node.split('.')[0]"])
        .output();
    let major = match node {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .unwrap_or(0),
        Ok(out) => panic!(
            "node does not run ({}): {INSTALL_HINT}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("node not found ({e}): Node.js 20 or newer is needed; {INSTALL_HINT}"),
    };
    assert!(major >= 20, "Node.js {major} is too old (20+ needed)");
    let playwright = workspace().join("scripts/browser/node_modules/playwright-core/package.json");
    assert!(
        playwright.is_file(),
        "{} is missing: {INSTALL_HINT}",
        playwright.display()
    );
}

/// Where a screenshot named `file` is kept after the test:
/// `$CARGO_TARGET_DIR/artifacts/` (`<workspace>/target/artifacts/` without
/// `CARGO_TARGET_DIR`).
pub fn artifact_path(file: &str) -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace().join(dir),
        None => workspace().join("target"),
    };
    target.join("artifacts").join(file)
}

/// What a browser script did: its exit code (None when killed), the last
/// JSON line it printed, and everything it wrote.
pub struct BrowserRun {
    pub exit: Option<i32>,
    pub result: Value,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `node scripts/browser/<script> <args>` from the workspace, killed
/// after `limit`. Blocking: call it from `spawn_blocking`.
pub fn run_script(script: &str, args: &[String], limit: Duration) -> BrowserRun {
    let script = workspace().join("scripts/browser").join(script);
    let mut child = Command::new("node")
        .arg(&script)
        .args(args)
        .current_dir(workspace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn node {}: {e}; {INSTALL_HINT}", script.display()));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let exit = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let result = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    BrowserRun {
        exit,
        result,
        stdout,
        stderr,
    }
}
