//! The `meshgate` command itself: password hashing for users files, clear failures for
//! configurations that cannot work, and output that is safe for a terminal. (`meshgate
//! demo` and the catalog commands are exercised by the Python tests.)

use crate::support::flight;

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

/// A request's purpose is the requester's text, shown to the owner who decides: an escape
/// sequence in it (clear the screen, move the cursor, rewrite the line being read) is shown
/// as text, never obeyed, in the table `meshgate access list` prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_list_shows_other_peoples_text_without_obeying_it() {
    use meshgate::governance::NewRequest;
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("meshgate.db");
    let server = flight::start_with(Default::default(), |config| {
        config.governance = meshgate::Governance::Sqlite(db);
    })
    .await;
    let purpose = "quarterly review\u{1b}[2J\u{1b}[1;1HAPPROVED BY CFO\u{9b}31m\r\u{7}";
    server
        .gateway
        .workflow()
        .request(
            "intern",
            NewRequest {
                product: "reference.counterparties".into(),
                columns: Vec::new(),
                purpose: purpose.into(),
                valid_days: Some(7),
            },
        )
        .await
        .unwrap();
    let address = format!("http://{}", server.addr);
    let output = tokio::task::spawn_blocking(move || {
        meshgate()
            .args([
                "access",
                "list",
                "--server",
                &address,
                "--user",
                "ref-owner",
            ])
            .env("MESHGATE_PASSWORD", "ref-owner-pw")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("quarterly review"), "{stdout}");
    let obeyed: Vec<char> = stdout
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect();
    assert!(
        obeyed.is_empty(),
        "control characters reach the terminal: {obeyed:?}"
    );
    assert!(stdout.contains("\\u{1b}[2J"), "{stdout}");
}
