//! The browser tests (tests/browser, Playwright driving Debian's Chromium) as part of
//! `cargo test`. Without node, Chromium or `npm ci` in tests/browser they are skipped with the
//! reason printed; with CI=true that is a failure instead.

use std::path::Path;
use std::process::Command;

fn missing() -> Option<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed".into());
    }
    if !Path::new(&chromium).exists() {
        return Some(format!("{chromium} is missing (apt-get install chromium)"));
    }
    if !dir.join("node_modules/playwright-core").exists() {
        return Some("playwright-core is missing (npm ci in tests/browser)".into());
    }
    None
}

#[test]
fn dashboard_and_widget_in_chromium() {
    if let Some(why) = missing() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but the browser tests cannot run: {why}");
        }
        eprintln!("skipped: browser tests not run: {why}");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let out = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .args(["dashboard.test.mjs", "board2000.test.mjs", "demo.test.mjs"])
        .current_dir(&dir)
        .env("CHEX_BIN", env!("CARGO_BIN_EXE_chex"))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser tests failed:\n{stdout}\n{stderr}"
    );
}
