//! Quality on a schedule: `serve` and `demo` measure every product's quality rules when they
//! start, every `quality_interval` after that, and after each publish, so
//! `mesh_catalog.quality` and `/metrics` say how products keep their promises without anyone
//! asking. Owners measure on demand with `meshgate quality --check`.

use std::sync::Arc;
use std::time::Duration;

use meshgate::Gateway;
use meshgate::engine::QualityStatus;
use tokio::sync::Notify;

use crate::{Level, say};

/// Check every product now, then every `every`, and whenever `published` is notified.
pub(crate) async fn check_on_schedule(gateway: Gateway, every: Duration, published: Arc<Notify>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = published.notified() => {}
        }
        match gateway.check_quality(None, None).await {
            Ok(results) => {
                let breached: Vec<String> = results
                    .iter()
                    .filter(|r| r.status == QualityStatus::Breached)
                    .map(|r| format!("{} {}", r.product, r.rule.id))
                    .collect();
                if !breached.is_empty() {
                    say(
                        Level::Warn,
                        &crate::terminal::safe(&format!(
                            "quality: {} rule(s) breached: {} (mesh_catalog.quality says why)",
                            breached.len(),
                            breached.join(", ")
                        )),
                    );
                }
            }
            Err(e) => say(
                Level::Warn,
                &crate::terminal::safe(&format!("quality checks could not run: {e}")),
            ),
        }
    }
}
