//! Group commit of audit writes: the records and outcomes of concurrent queries share one
//! transaction, so N queries cost one durable commit (one fsync of SQLite's WAL, one round of
//! PostgreSQL's), not N.
//!
//! Each write joins a queue and then waits for its turn to write. The first to get the turn
//! takes the whole queue, its own write and every one that arrived while the previous
//! transaction committed, writes them in order in one transaction and hands each its result;
//! the others are handed theirs when it commits. No background task: the callers' own futures
//! do the work, so the store keeps working on whatever runtime calls it. A write that returned
//! `Ok` is committed, exactly as with one transaction per write.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::error::StoreError;
use meshgate_api::{AuditOutcome, AuditRecord};

/// One audit write.
#[derive(Debug, Clone)]
pub(crate) enum AuditWrite {
    /// A query's record, before anything of it is sent.
    Start(AuditRecord),
    /// How a query ended.
    End(String, AuditOutcome),
}

type Waiting = (AuditWrite, oneshot::Sender<Result<(), StoreError>>);

/// The queue of one store.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Vec<Waiting>>,
    /// Held by the caller that writes the queue now.
    turn: tokio::sync::Mutex<()>,
}

impl GroupCommit {
    fn queue(&self) -> MutexGuard<'_, Vec<Waiting>> {
        // A panic while the lock was held cannot leave the queue half-changed (push and take).
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `item` and return once it is committed (or failed). `write` writes a batch in
    /// one transaction and returns one result per item, in order.
    pub(crate) async fn submit<F, Fut>(&self, item: AuditWrite, write: F) -> Result<(), StoreError>
    where
        F: FnOnce(Vec<AuditWrite>) -> Fut,
        Fut: Future<Output = Vec<Result<(), StoreError>>>,
    {
        let (done, mut result) = oneshot::channel();
        self.queue().push((item, done));
        let _turn = tokio::select! {
            // Written by a caller whose turn came first: done, without waiting for a turn.
            written = &mut result => return written.unwrap_or_else(|_| Err(abandoned())),
            turn = self.turn.lock() => turn,
        };
        match result.try_recv() {
            // Written by the caller before us, between our queueing and our turn.
            Ok(written) => return written,
            // That caller was dropped while writing: whether it committed is unknown.
            Err(oneshot::error::TryRecvError::Closed) => return Err(abandoned()),
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let batch = std::mem::take(&mut *self.queue());
        let (items, senders): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let mut results = write(items).await.into_iter();
        for sender in senders {
            let _ = sender.send(results.next().unwrap_or_else(|| Err(abandoned())));
        }
        result.await.unwrap_or_else(|_| Err(abandoned()))
    }
}

fn abandoned() -> StoreError {
    StoreError::Other("the audit write was abandoned before it was known to be committed".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn outcome() -> AuditOutcome {
        AuditOutcome {
            status: meshgate_api::QueryStatus::Ok,
            rows_returned: 0,
            bytes_returned: 0,
            duration_ms: 0,
            error: None,
            workers: Vec::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_transactions_and_each_gets_its_own_result() {
        let commits = Arc::new(GroupCommit::default());
        let transactions = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..64 {
            let (commits, transactions) = (Arc::clone(&commits), Arc::clone(&transactions));
            tasks.push(tokio::spawn(async move {
                let item = AuditWrite::End(format!("q{i}"), outcome());
                commits
                    .submit(item, |batch| async move {
                        transactions.fetch_add(1, Ordering::SeqCst);
                        // A slow commit, so that writes queue behind it.
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        batch
                            .iter()
                            .map(|w| match w {
                                AuditWrite::End(id, _) if id == "q13" => {
                                    Err(StoreError::Other("refused".into()))
                                }
                                _ => Ok(()),
                            })
                            .collect()
                    })
                    .await
                    .is_ok()
            }));
        }
        let mut ok = Vec::new();
        for task in tasks {
            ok.push(task.await.unwrap());
        }
        let failed: Vec<usize> = (0..64).filter(|i| !ok[*i]).collect();
        assert_eq!(failed, [13]);
        let transactions = transactions.load(Ordering::SeqCst);
        assert!(
            transactions < 64,
            "{transactions} transactions for 64 writes"
        );
    }
}
