//! Group commit of audit writes, and grouped reads of the grant generation: concurrent
//! callers' work shares one trip to the store. N queries' audit records cost one durable
//! commit (one fsync of SQLite's WAL, one round of PostgreSQL's), not N; N queries asking for
//! the grant generation at once cost one read.
//!
//! Each item joins a queue and then waits for its turn. The first to get the turn takes the
//! whole queue, its own item and every one that arrived while the previous group was in the
//! store, hands them to the store together and gives each its result; the others are handed
//! theirs when it is done. No background task: the callers' own futures do the work, so the
//! store keeps working on whatever runtime calls it. A write that returned `Ok` is committed,
//! exactly as with one transaction per write; a read answers with what the store held after
//! the caller asked (the group is taken from the queue after every item in it was queued).
//!
//! An item may also *linger*: wait a while for a caller that needs the store at once (a
//! query's record, which its first batch waits for) to take it along, and only then ask for a
//! turn of its own. Outcomes do, since nothing waits for them: under load they ride in the
//! records' transactions instead of paying commits of their own. [`Grouped::flush`] ends every
//! lingering, for a gateway that is stopping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

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

/// How long an outcome waits for a record's transaction to take it along.
pub(crate) const OUTCOME_LINGER: Duration = Duration::from_millis(20);

/// The audit writes of one store.
pub(crate) type GroupCommit = Grouped<AuditWrite, ()>;

type Waiting<T, R> = (T, oneshot::Sender<Result<R, StoreError>>);

/// The queue of one kind of work on one store: items `T`, each answered with an `R`.
#[derive(Debug)]
pub(crate) struct Grouped<T, R> {
    queue: Mutex<Vec<Waiting<T, R>>>,
    /// Held by the caller that takes the queue to the store now.
    turn: tokio::sync::Mutex<()>,
    /// Wakes lingering items (see [`Grouped::flush`]).
    flushed: Notify,
    /// Set by [`Grouped::flush`]: nothing lingers any more.
    stopping: AtomicBool,
}

impl<T, R> Default for Grouped<T, R> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Vec::new()),
            turn: tokio::sync::Mutex::new(()),
            flushed: Notify::new(),
            stopping: AtomicBool::new(false),
        }
    }
}

impl<T, R> Grouped<T, R> {
    fn queue(&self) -> MutexGuard<'_, Vec<Waiting<T, R>>> {
        // A panic while the lock was held cannot leave the queue half-changed (push and take).
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `item` and return once the group it went with is done. `run` takes a group to the
    /// store (a batch of writes in one transaction, or one read) and returns one result per
    /// item, in order. With a `linger`, the item first waits that long for another caller's
    /// turn to take it along.
    pub(crate) async fn submit<F, Fut>(
        &self,
        item: T,
        linger: Duration,
        run: F,
    ) -> Result<R, StoreError>
    where
        F: FnOnce(Vec<T>) -> Fut,
        Fut: Future<Output = Vec<Result<R, StoreError>>>,
    {
        let (done, mut result) = oneshot::channel();
        if linger.is_zero() {
            self.queue().push((item, done));
        } else {
            // Registered before queueing and `stopping` read after: a flush before this is
            // seen below, one after it wakes the wait.
            let flushed = self.flushed.notified();
            tokio::pin!(flushed);
            flushed.as_mut().enable();
            self.queue().push((item, done));
            if !self.stopping.load(Ordering::Acquire) {
                tokio::select! {
                    // Taken along by a caller whose turn came while this one lingered.
                    written = &mut result => return written.unwrap_or_else(|_| Err(abandoned())),
                    () = tokio::time::sleep(linger) => {}
                    () = &mut flushed => {}
                }
            }
        }
        let _turn = tokio::select! {
            // Done by a caller whose turn came first: without waiting for a turn.
            written = &mut result => return written.unwrap_or_else(|_| Err(abandoned())),
            turn = self.turn.lock() => turn,
        };
        match result.try_recv() {
            // Done by the caller before us, between our queueing and our turn.
            Ok(written) => return written,
            // That caller was dropped while in the store: whether its writes committed is
            // unknown.
            Err(oneshot::error::TryRecvError::Closed) => return Err(abandoned()),
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let batch = std::mem::take(&mut *self.queue());
        let (items, senders): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let mut results = run(items).await.into_iter();
        for sender in senders {
            let _ = sender.send(results.next().unwrap_or_else(|| Err(abandoned())));
        }
        result.await.unwrap_or_else(|_| Err(abandoned()))
    }

    /// Stop lingering: items waiting for company go to the store now, and later ones do not
    /// wait. For a gateway that is stopping, so that no outcome is left in a queue.
    pub(crate) fn flush(&self) {
        self.stopping.store(true, Ordering::Release);
        self.flushed.notify_waiters();
    }
}

impl<R: Clone> Grouped<(), R> {
    /// One `read` answers every caller queued with this one: each gets its value, or the same
    /// failure ([`StoreError::Shared`]).
    pub(crate) async fn read<F, Fut>(&self, read: F) -> Result<R, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<R, StoreError>>,
    {
        self.submit((), Duration::ZERO, |asked| async move {
            let shared = read().await.map_err(std::sync::Arc::new);
            asked
                .iter()
                .map(|()| shared.clone().map_err(StoreError::Shared))
                .collect()
        })
        .await
    }
}

fn abandoned() -> StoreError {
    StoreError::Other(
        "the store call was abandoned (its caller stopped) before its result was known".into(),
    )
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
                    .submit(item, Duration::ZERO, |batch| async move {
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_grouped_read_answers_each_caller_with_what_was_there_after_it_asked() {
        let reads = Arc::new(Grouped::<(), i64>::default());
        let generation = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let trips = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (reads, generation, trips) = (
                Arc::clone(&reads),
                Arc::clone(&generation),
                Arc::clone(&trips),
            );
            tasks.push(tokio::spawn(async move {
                // A change committed just before this caller asks: it must see it.
                let changed_to = generation.fetch_add(1, Ordering::SeqCst) + 1;
                let read = reads
                    .read(|| async move {
                        trips.fetch_add(1, Ordering::SeqCst);
                        let now = generation.load(Ordering::SeqCst);
                        // A slow read, so that callers arrive while it is under way.
                        tokio::time::sleep(Duration::from_millis(3)).await;
                        Ok(now)
                    })
                    .await
                    .unwrap();
                (changed_to, read)
            }));
        }
        for task in tasks {
            let (changed_to, read) = task.await.unwrap();
            assert!(
                read >= changed_to,
                "asked after {changed_to}, answered {read}"
            );
        }
        let trips = trips.load(Ordering::SeqCst);
        assert!(trips < 64, "{trips} reads for 64 callers");
    }

    #[tokio::test]
    async fn a_failed_grouped_read_fails_every_caller_alike() {
        let reads = Arc::new(Grouped::<(), i64>::default());
        let turn = reads.turn.lock().await;
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let reads = Arc::clone(&reads);
            tasks.push(tokio::spawn(async move {
                reads
                    .read(|| async { Err(StoreError::Unreachable(sqlx::Error::PoolTimedOut)) })
                    .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(turn);
        for task in tasks {
            let error = task.await.unwrap().unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("the governance store cannot be reached"),
                "{error}"
            );
            assert!(error.is_unreachable());
        }
    }

    #[tokio::test]
    async fn a_lingering_outcome_rides_in_the_next_records_transaction() {
        let commits = Arc::new(GroupCommit::default());
        let batches = Arc::new(Mutex::new(Vec::new()));
        let write = |batches: Arc<Mutex<Vec<usize>>>| {
            move |batch: Vec<AuditWrite>| async move {
                batches.lock().unwrap().push(batch.len());
                batch.iter().map(|_| Ok(())).collect::<Vec<_>>()
            }
        };
        let lingering = {
            let (commits, batches) = (Arc::clone(&commits), Arc::clone(&batches));
            tokio::spawn(async move {
                let item = AuditWrite::End("q1".into(), outcome());
                commits
                    .submit(item, Duration::from_secs(30), write(batches))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(batches.lock().unwrap().is_empty(), "the outcome waits");
        let record = AuditWrite::End("q2".into(), outcome());
        let started = std::time::Instant::now();
        commits
            .submit(record, Duration::ZERO, write(Arc::clone(&batches)))
            .await
            .unwrap();
        lingering.await.unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(*batches.lock().unwrap(), [2], "one transaction for both");
    }

    #[tokio::test]
    async fn flushing_ends_lingering_now_and_for_later_writes() {
        let commits = Arc::new(GroupCommit::default());
        let written = |commits: Arc<GroupCommit>, id: &str| {
            let item = AuditWrite::End(id.into(), outcome());
            tokio::spawn(async move {
                commits
                    .submit(item, Duration::from_secs(30), |batch| async move {
                        batch.iter().map(|_| Ok(())).collect()
                    })
                    .await
            })
        };
        let lingering = written(Arc::clone(&commits), "q1");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!lingering.is_finished());
        commits.flush();
        tokio::time::timeout(Duration::from_secs(5), lingering)
            .await
            .expect("a flush ends the lingering")
            .unwrap()
            .unwrap();
        let later = written(Arc::clone(&commits), "q2");
        tokio::time::timeout(Duration::from_secs(5), later)
            .await
            .expect("after a flush nothing lingers")
            .unwrap()
            .unwrap();
    }
}
