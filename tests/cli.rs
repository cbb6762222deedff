//! The `meshgate` command itself: password hashing for users files, and clear failures for
//! configurations that cannot work. (`meshgate demo` is exercised by the Python tests.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers panic to fail the test

use std::io::Write;
use std::process::{Command, Stdio};

use meshgate::policy::UserDirectory;

fn meshgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshgate"))
}

#[test]
fn hash_password_writes_a_hash_the_users_file_accepts() {
    let mut child = meshgate()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let hash = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse"));
    let users = UserDirectory::parse(
        "users.toml",
        &format!("[[user]]\nname = \"ann\"\npassword = \"{hash}\"\n"),
    )
    .unwrap();
    assert!(users.authenticate("ann", "correct horse").is_ok());
    assert!(users.authenticate("ann", "correct horse\n").is_err());
}

#[test]
fn serve_names_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meshgate.toml");
    std::fs::write(
        &config,
        "products = \"products\"\npolicies = \"policies\"\nlisten_on = \"x\"\n",
    )
    .unwrap();
    let output = meshgate()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("meshgate.toml") && stderr.contains("listen_on"),
        "{stderr}"
    );

    std::fs::write(&config, "products = \"nowhere\"\npolicies = \"policies\"\n").unwrap();
    let output = meshgate()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("nowhere"), "{stderr}");
}
