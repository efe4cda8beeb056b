//! The binary as an operator meets it.

use std::process::Command;

use migration::MigratorTrait;

fn chex() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chex"));
    c.env_remove("CHEX_DATABASE_URL")
        .env_remove("CHEX_JWT_SECRET")
        .env_remove("CHEX_SECRET_KEY");
    c
}

/// `chex demo` with its database in `dir`, listening on `bind`, its banner on a pipe.
fn demo(dir: &std::path::Path, bind: &str, users: u32) -> Command {
    let mut c = chex();
    c.arg("demo")
        .env(
            "CHEX_DATABASE_URL",
            format!("sqlite://{}/demo.db?mode=rwc", dir.display()),
        )
        .env("CHEX_BIND", bind)
        .env("CHEX_DEMO_USERS", users.to_string())
        .env("CHEX_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    c
}

#[test]
fn migrate_status_on_a_fresh_sqlite_file_lists_every_migration() {
    let dir = std::env::temp_dir().join(format!("chex-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let url = format!("sqlite://{}/fresh.db?mode=rwc", dir.display());
    let out = chex()
        .args(["migrate", "status", "--database-url", &url])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        migration::Migrator::migrations().len(),
        "{text}"
    );
    assert!(lines.iter().all(|l| l.starts_with("pending")), "{text}");
    let up = chex()
        .args(["migrate", "up", "--database-url", &url])
        .output()
        .expect("run");
    assert!(up.status.success());
    let after = chex()
        .args(["migrate", "status", "--database-url", &url])
        .output()
        .expect("run");
    assert!(
        String::from_utf8_lossy(&after.stdout)
            .lines()
            .all(|l| l.starts_with("applied"))
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn serve_with_a_bad_database_url_exits_with_one_line() {
    let out = chex()
        .args(["serve"])
        .env("CHEX_DATABASE_URL", "postgres://nobody@127.0.0.1:1/nothing")
        .env("CHEX_JWT_SECRET", "0123456789abcdef0123456789abcdef")
        .env(
            "CHEX_SECRET_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )
        .env("CHEX_BIND", "127.0.0.1:0")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("CHEX_DATABASE_URL"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn serve_with_a_short_jwt_secret_names_the_variable() {
    let out = chex()
        .args(["serve"])
        .env("CHEX_JWT_SECRET", "short")
        .env("CHEX_BIND", "127.0.0.1:0")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CHEX_JWT_SECRET: is 5 bytes"), "{err}");
}

#[tokio::test]
async fn demo_prints_dashboard_login_and_a_working_token() {
    use std::io::{BufRead, BufReader};
    crate::helpers::install_crypto();
    let dir = std::env::temp_dir().join(format!("chex-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut child = demo(&dir, "127.0.0.1:0", 7).spawn().expect("spawn demo");
    let stdout = child.stdout.take().expect("stdout");
    let lines: Vec<String> = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .take(3)
            .map(|l| l.expect("line"))
            .collect()
    })
    .await
    .expect("read");
    let dashboard = lines[0]
        .strip_prefix("dashboard: ")
        .expect("dashboard line")
        .trim_end_matches('/')
        .to_owned();
    assert!(
        lines[1].starts_with("login: admin@demo.chex / "),
        "{lines:?}"
    );
    let token = lines[2].strip_prefix("token: ").expect("token line");
    let claims: serde_json::Value = {
        use base64::Engine;
        let payload = token.split('.').nth(1).expect("jwt");
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .expect("b64"),
        )
        .expect("json")
    };
    assert!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat") >= 24 * 3600
    );
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let v: serde_json::Value = http
            .get(format!("{dashboard}/api/users"))
            .bearer_auth(token)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if v["users"].as_array().is_some_and(|u| u.len() == 7) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "demo people never appeared: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

/// `chex demo | head -1`, or a test that reads the lines it needs and drops the pipe: the
/// banner's writes fail, and the server must go on serving. It used to panic on the broken pipe,
/// which made the test above fail now and then, when the reader let go before the last lines.
#[tokio::test]
async fn demo_keeps_serving_when_nobody_reads_its_stdout() {
    crate::helpers::install_crypto();
    let dir = std::env::temp_dir().join(format!("chex-demo-closed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // Its address cannot be read from the banner here: a port free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = demo(&dir, &format!("127.0.0.1:{port}"), 3)
        .spawn()
        .expect("spawn demo");
    // The read end closes before the demo writes a line.
    drop(child.stdout.take());
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut healthy = 0;
    while healthy < 3 {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let _ = std::fs::remove_dir_all(&dir);
            panic!("the demo exited ({status}) when its stdout was closed");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo never answered on port {port}"
        );
        let up = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        // Once up, it must stay up past the banner's last line.
        if up {
            healthy += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn create_account_then_log_in_and_issue_a_token_for_scripts() {
    use std::io::Write;
    crate::helpers::install_crypto();
    let dir = std::env::temp_dir().join(format!("chex-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let url = format!("sqlite://{}/admin.db?mode=rwc", dir.display());
    let secret = "0123456789abcdef0123456789abcdef-cli";
    let run = |args: &[&str], stdin: &str| {
        let mut child = chex()
            .args(args)
            .env("CHEX_DATABASE_URL", &url)
            .env("CHEX_JWT_SECRET", secret)
            .env(
                "CHEX_SECRET_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            )
            .env_remove("CHEX_ADMIN_PASSWORD")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write");
        child.wait_with_output().expect("run")
    };
    let create = [
        "admin",
        "create-account",
        "--email",
        "ops@acme.test",
        "--org",
        "acme",
        "--admin",
    ];
    let short = run(&create, "short\n");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12"));
    let ok = run(&create, "a long enough password\n");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ops@acme.test (admin)"));
    let again = run(&create, "a long enough password\n");
    assert!(!again.status.success(), "the same email twice is refused");

    let issued = run(
        &[
            "token", "issue", "--org", "acme", "--ttl", "90", "--role", "admin",
        ],
        "",
    );
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let token = String::from_utf8_lossy(&issued.stdout).trim().to_owned();
    let missing = run(&["token", "issue", "--org", "nobody"], "");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no organization named nobody"));

    // The same database served: the account logs in and the script token is accepted.
    let mut config = chex::config::Config::for_tests();
    config.jwt_secret = chex::config::Secret::new(secret);
    let store = chex::store::Store::connect(&url).await.expect("store");
    let claims = chex::auth::Keys::from_config(&config)
        .expect("keys")
        .verify(&token)
        .expect("the issued token verifies");
    assert_eq!(
        (claims.role.as_str(), claims.exp - claims.iat),
        ("admin", 90)
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = chex::app::Server::start_with_store(config, listener, store)
        .await
        .expect("server");
    let http = reqwest::Client::new();
    let login = http
        .post(format!("http://{}/api/auth/login", server.addr))
        .json(&serde_json::json!({"email": "ops@acme.test", "password": "a long enough password"}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);
    let users = http
        .get(format!("http://{}/api/accounts", server.addr))
        .bearer_auth(&token)
        .send()
        .await
        .expect("accounts");
    assert_eq!(users.status(), 200, "the script token is an admin's");
    let _ = std::fs::remove_dir_all(dir);
}
