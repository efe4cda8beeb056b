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
