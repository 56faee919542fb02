//! Headless Chromium for the page tests (`browser.rs`, `dashboard.rs`):
//! ChromeDriver on a free port, a fresh profile, screenshots into
//! `test-artefacts/`. Included with `#[path]` by the tests that drive a
//! browser only, so the others do not build it.

#![allow(dead_code, reason = "each page test uses a different subset")]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

use crate::common::repo_root;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long ChromeDriver gets to start answering.
const DRIVER_START: Duration = Duration::from_secs(30);

/// Kills the child when the test ends, however it ends.
pub struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Headless Chromium `height` pixels tall with a fresh profile in
/// `profile`, driven through ChromeDriver; keep the `Killed` alive as
/// long as the client.
pub async fn headless(profile: &Path, height: u32) -> (Killed, fantoccini::Client) {
    let driver_port = free_port();
    let driver = Killed(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    // The flags this machine needs: no sandbox (root), and nothing that
    // reaches for the network on its own.
    let caps = json!({"goog:chromeOptions": {"binary": CHROMIUM, "args": [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
        format!("--window-size=1280,{height}"), format!("--user-data-dir={}", profile.display())]}});
    let caps: fantoccini::wd::Capabilities = caps.as_object().expect("object").clone();
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let start = Instant::now();
    loop {
        match ClientBuilder::new(connector.clone())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
        {
            Ok(client) => return (driver, client),
            Err(e) if start.elapsed() < DRIVER_START => {
                eprintln!("waiting for chromedriver: {e}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("chromedriver did not answer: {e}"),
        }
    }
}

/// Where screenshots go: `test-artefacts/` (or `CONDUCTOR_TEST_ARTEFACTS`).
pub fn artefacts() -> PathBuf {
    let dir =
        std::env::var_os("CONDUCTOR_TEST_ARTEFACTS").map_or_else(|| repo_root().join("test-artefacts"), PathBuf::from);
    std::fs::create_dir_all(&dir).expect("artefacts dir");
    dir
}

/// Saves what the page shows as `name` under [`artefacts`] (`name` may
/// name a subdirectory).
pub async fn screenshot(client: &fantoccini::Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let path = artefacts().join(name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("artefacts dir");
    }
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with
/// a screenshot of what the page showed and its `#message`.
pub async fn wait_for<T, F, Fut>(client: &fantoccini::Client, what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(found) = check().await {
            return found;
        }
        if start.elapsed() > timeout {
            screenshot(client, &format!("failed-{}.png", what.replace(' ', "-"))).await;
            let message = match client.find(Locator::Css("#message")).await {
                Ok(m) => m.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            panic!("timed out waiting for {what}; #message says: {message:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The page's `data-state` (`signed-out`, `signed-in`, ...).
pub async fn body_state(client: &fantoccini::Client) -> Option<String> {
    client.find(Locator::Css("body")).await.ok()?.attr("data-state").await.ok().flatten()
}
