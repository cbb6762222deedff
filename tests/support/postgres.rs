//! A real PostgreSQL server for a test: a cluster of its own under a temporary directory, on a
//! free loopback port, with password authentication over TCP (as a deployment has it). Stopped
//! (and its files removed) when dropped; `stop` and `start` let a test take it away mid-load.
//!
//! The server binaries come from `$MESHGATE_PG_BIN`, else Debian's `/usr/lib/postgresql/<v>/bin`
//! (`tests/run-all.sh` installs the package), else `initdb` on the `PATH`. Without them the
//! test fails saying so: a PostgreSQL test is never skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use meshgate::governance::PostgresOptions;

pub const USER: &str = "meshgate";
pub const PASSWORD: &str = "test-secret-for-the-store";

pub struct Postgres {
    root: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run the server as this system user (PostgreSQL refuses to run as root).
    run_as: Option<String>,
}

fn binaries() -> PathBuf {
    if let Some(dir) = std::env::var_os("MESHGATE_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let on_path = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match on_path {
        Some(initdb) => Path::new(&initdb).parent().unwrap().to_path_buf(),
        None => panic!(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: run \
             tests/run-all.sh, which installs Debian's `postgresql`, or set MESHGATE_PG_BIN"
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn check(what: &str, output: std::io::Result<Output>) {
    let output = output.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Postgres {
    /// Initialise and start a new cluster.
    pub fn start() -> Self {
        let bin = binaries();
        let root = tempfile::tempdir().unwrap();
        let run_as = is_root().then(|| "postgres".to_string());
        let data = root.path().join("data");
        std::fs::write(root.path().join("pw"), PASSWORD).unwrap();
        if let Some(user) = &run_as {
            check(
                "giving the test cluster's directory to the postgres user",
                Command::new("chown")
                    .args(["-R", user])
                    .arg(root.path())
                    .output(),
            );
        }
        let pg = Self {
            root,
            bin,
            port: free_port(),
            run_as,
        };
        check(
            "initdb",
            pg.command("initdb")
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    USER,
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                ])
                .args(["--no-sync", "-E", "UTF8", "--locale=C.UTF-8"])
                .arg(format!("--pwfile={}", pg.root.path().join("pw").display()))
                .output(),
        );
        pg.start_again();
        pg
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    /// Start the server (again, after [`Self::stop`]), on the same port and data.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.root.path().display()
        );
        check(
            "starting PostgreSQL",
            self.command("pg_ctl")
                .arg("-D")
                .arg(self.root.path().join("data"))
                .args(["-o", &options, "-w", "-t", "60", "-l"])
                .arg(self.root.path().join("server.log"))
                .arg("start")
                .output(),
        );
    }

    /// Stop the server at once (connections are cut, as when it crashes or is fenced).
    pub fn stop(&self) {
        check(
            "stopping PostgreSQL",
            self.command("pg_ctl")
                .arg("-D")
                .arg(self.root.path().join("data"))
                .args(["-m", "immediate", "-w", "stop"])
                .output(),
        );
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new, empty database; its URL (without the password: see [`PASSWORD`]).
    pub fn database(&self, name: &str) -> String {
        check(
            "creating a database",
            Command::new(self.bin.join("psql"))
                .args(["-h"])
                .arg(self.root.path())
                .args(["-p", &self.port.to_string(), "-U", USER, "-d", "postgres"])
                .args(["-v", "ON_ERROR_STOP=1", "-c"])
                .arg(format!("CREATE DATABASE \"{name}\""))
                .output(),
        );
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Rows of `sql` in database `name`, one line each, columns separated by `|`.
    pub fn query(&self, name: &str, sql: &str) -> Vec<String> {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h"])
            .arg(self.root.path())
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", name])
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Options for a store in database `name` (created by [`Self::database`]).
    pub fn options(&self, url: &str) -> PostgresOptions {
        let mut options = PostgresOptions::new(url);
        options.password = Some(PASSWORD.to_string().into());
        options.acquire_timeout = Duration::from_secs(3);
        options
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.root.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
