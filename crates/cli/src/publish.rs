//! Publishing without a restart: `serve` and `worker` watch their mesh directories
//! (`products`, `policies`) and, on a change or on SIGHUP, lint them as `meshgate lint` does
//! and publish them into the running gateway ([`Gateway::publish`]) or worker
//! ([`WorkerNode::publish`]): checked whole, swapped atomically. A change that fails keeps
//! the last good version serving, and says why.

use std::path::PathBuf;
use std::time::Duration;

use meshgate::Gateway;
use meshgate::engine::WorkerNode;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::{Level, say};

/// What a mesh directory is published into.
#[derive(Clone)]
pub(crate) enum Target {
    Gateway(Gateway),
    Worker(Arc<WorkerNode>),
}

impl Target {
    fn version(&self) -> String {
        match self {
            Target::Gateway(gateway) => gateway.policies().fingerprint().to_string(),
            Target::Worker(node) => node.policy_version(),
        }
    }

    async fn publish(
        &self,
        catalog: meshgate::catalog::Catalog,
        sources: &meshgate::policy::PolicySources,
    ) -> Result<String, String> {
        match self {
            Target::Gateway(gateway) => gateway.publish(catalog, sources).await,
            Target::Worker(node) => node.publish(catalog, sources).await,
        }
        .map_err(|e| e.to_string())
    }
}

/// Where a served mesh's files live, and how often to look at them.
pub(crate) struct MeshDirs {
    pub(crate) products: PathBuf,
    pub(crate) policies: PathBuf,
    /// `None`: only on SIGHUP.
    pub(crate) watch: Option<Duration>,
}

impl MeshDirs {
    /// A fingerprint of every file the mesh is read from (names and contents), to notice a
    /// change; `None` when a directory cannot be read.
    fn fingerprint(&self) -> Option<u64> {
        let mut files = Vec::new();
        for dir in [&self.products, &self.policies] {
            collect(dir, &mut files).ok()?;
        }
        files.sort();
        // Only to notice a change; the policy version itself is the gateway's hash.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for file in files {
            let text = std::fs::read(&file).ok()?;
            file.hash(&mut hasher);
            text.hash(&mut hasher);
        }
        Some(hasher.finish())
    }

    /// Lint the directories as `meshgate lint` does: warnings are said, errors refuse.
    /// What is served at start passes the same check as what is published later.
    pub(crate) async fn lint(&self) -> Result<(), String> {
        let report = meshgate::lint::lint_dirs(&self.products, &self.policies, None).await;
        for warning in report
            .findings
            .iter()
            .filter(|f| f.severity == meshgate::lint::Severity::Warning)
        {
            say(Level::Warn, &crate::terminal::safe(&warning.to_string()));
        }
        let errors: Vec<String> = report
            .findings
            .iter()
            .filter(|f| f.severity == meshgate::lint::Severity::Error)
            .map(|f| f.to_string())
            .collect();
        if !errors.is_empty() {
            return Err(format!(
                "{} lint error(s):\n{}",
                errors.len(),
                errors.join("\n")
            ));
        }
        Ok(())
    }

    /// Lint the directories and publish them. `Ok`: the new policy version.
    async fn publish(&self, target: &Target) -> Result<String, String> {
        // Lint and load read the files separately: only what was linted may be published.
        let linted = self.fingerprint();
        self.lint().await?;
        let catalog =
            meshgate::catalog::Catalog::load_dir(&self.products).map_err(|e| e.to_string())?;
        let sources =
            meshgate::policy::PolicySources::from_dir(&self.policies).map_err(|e| e.to_string())?;
        if linted.is_none() || self.fingerprint() != linted {
            return Err(
                "the files changed while they were being checked; they are checked again at \
                 the next look"
                    .into(),
            );
        }
        let products = catalog.products().count();
        let version = target.publish(catalog, &sources).await?;
        Ok(format!("{products} product(s), policy version {version}"))
    }
}

fn collect(dir: &std::path::Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Publish `dirs` into `gateway` on SIGHUP, and whenever their files change (every
/// `dirs.watch`). Each attempt is reported; a failed one leaves the gateway as it was.
/// Each publish that succeeds notifies `published` (the quality checks measure the new
/// version).
pub(crate) async fn publish_on_change(
    target: Target,
    dirs: MeshDirs,
    published: std::sync::Arc<tokio::sync::Notify>,
) {
    let mut seen = dirs.fingerprint();
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(_) => {
            say(
                Level::Warn,
                "cannot listen for SIGHUP; the mesh is published only when its files change",
            );
            None
        }
    };
    let mut tick = dirs.watch.map(tokio::time::interval);
    loop {
        #[cfg(unix)]
        let hangup_received = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await.is_some(),
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup_received = std::future::pending::<bool>();
        let ticked = async {
            match tick.as_mut() {
                Some(tick) => {
                    tick.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        let forced = tokio::select! {
            received = hangup_received => {
                if !received {
                    return;
                }
                true
            }
            () = ticked => false,
        };
        let now = dirs.fingerprint();
        if !forced && (now.is_none() || now == seen) {
            continue;
        }
        // Remembered whatever the outcome: a change that fails is reported once, and
        // retried when the files change again (or on SIGHUP).
        seen = now;
        let held = target.version();
        match dirs.publish(&target).await {
            Ok(what) => {
                say(
                    Level::Info,
                    &format!(
                        "published the mesh from {} and {}: {what}",
                        dirs.products.display(),
                        dirs.policies.display(),
                    ),
                );
                published.notify_one();
            }
            Err(e) => say(
                Level::Error,
                &crate::terminal::safe(&format!(
                    "publishing the mesh from {} and {} failed; still serving policy version {held}: {e}",
                    dirs.products.display(),
                    dirs.policies.display()
                )),
            ),
        }
    }
}
