//! Query limits: how many queries run at once (and how many wait), how many of them one
//! principal may hold, how long one may take, and how much memory one may use. A query over
//! any limit fails with a clear error; none is allowed to take the process down, and no
//! principal can hold every slot: each has a share of the running slots and of the queue, so
//! four long statements from one caller leave the others room to run.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{DataFusionError, Result, resources_datafusion_err};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::{ExecutionPlan, RecordBatchStream, SendableRecordBatchStream};
use futures::{FutureExt, Stream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::error::{Abort, GatewayError};

/// Limits on every query.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Queries running at once; further queries wait in a queue.
    pub max_concurrent: usize,
    /// Queries waiting for a slot; beyond this a query is refused at once.
    pub max_queued: usize,
    /// Queries one principal may run at once, its share of `max_concurrent` (default: half
    /// of it, at least 1). Its further queries wait for its own slots, never holding a
    /// shared one meanwhile.
    pub max_concurrent_per_principal: usize,
    /// Queries one principal may have waiting (default: a quarter of `max_queued`, at
    /// least 1).
    pub max_queued_per_principal: usize,
    /// How long a query may take, from admission to its last batch (default: 15 minutes;
    /// `None` only when set so).
    pub timeout: Option<Duration>,
    /// Memory one query may use (sorts, joins and aggregates spill to disk first).
    pub memory: Option<usize>,
}

impl Default for QueryLimits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Self::with_slots(cores * 2, 64)
    }
}

/// The default per-query time limit.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

impl QueryLimits {
    /// The default limits for `max_concurrent` running and `max_queued` waiting queries:
    /// each principal gets half of the running slots and a quarter of the queue.
    pub fn with_slots(max_concurrent: usize, max_queued: usize) -> Self {
        let max_concurrent = max_concurrent.max(1);
        Self {
            max_concurrent,
            max_queued,
            max_concurrent_per_principal: (max_concurrent / 2).max(1),
            max_queued_per_principal: (max_queued / 4).max(1),
            timeout: Some(DEFAULT_QUERY_TIMEOUT),
            memory: None,
        }
    }
}

/// The admission queue: one pool of running slots, and each principal's share of it.
#[derive(Debug)]
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    /// Each principal's own slots (its share), created on its first query.
    shares: Mutex<HashMap<String, Arc<Share>>>,
    limits: QueryLimits,
}

#[derive(Debug)]
struct Share {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// A running slot: one of the principal's own and one of the gateway's, released together
/// when the query's stream ends or is dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    _shared: OwnedSemaphorePermit,
    _own: OwnedSemaphorePermit,
}

/// Shares are forgotten (when idle) once this many principals have one.
const MAX_SHARES: usize = 10_000;

impl Admission {
    pub(crate) fn new(limits: QueryLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            waiting: AtomicUsize::new(0),
            shares: Mutex::new(HashMap::new()),
            limits,
        }
    }

    pub(crate) fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// `(running, queued)` queries now.
    pub(crate) fn load(&self) -> (usize, usize) {
        let total = self.limits.max_concurrent.max(1);
        (
            total.saturating_sub(self.slots.available_permits()),
            self.waiting.load(Ordering::SeqCst),
        )
    }

    fn share(&self, principal: &str) -> Result<Arc<Share>, GatewayError> {
        let mut shares = self
            .shares
            .lock()
            .map_err(|_| GatewayError::Internal("the admission queue is poisoned".into()))?;
        if shares.len() >= MAX_SHARES && !shares.contains_key(principal) {
            let full = self.limits.max_concurrent_per_principal.max(1);
            shares.retain(|_, share| {
                Arc::strong_count(share) > 1 || share.slots.available_permits() < full
            });
        }
        let share = shares.entry(principal.to_string()).or_insert_with(|| {
            Arc::new(Share {
                slots: Arc::new(Semaphore::new(
                    self.limits.max_concurrent_per_principal.max(1),
                )),
                waiting: AtomicUsize::new(0),
            })
        });
        Ok(Arc::clone(share))
    }

    /// A running slot for `principal`: at once if it has a slot of its share left and the
    /// gateway one free, after waiting in the queue otherwise.
    pub(crate) async fn admit(
        &self,
        principal: &str,
        deadline: Option<Instant>,
    ) -> Result<Slot, GatewayError> {
        let share = self.share(principal)?;
        let own = match Arc::clone(&share.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let limit = self.limits.max_queued_per_principal;
                if share.waiting.fetch_add(1, Ordering::SeqCst) >= limit {
                    share.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(GatewayError::Overloaded(format!(
                        "you are running {} queries, your share of the gateway, and {limit} more \
                         of yours are waiting; wait for them to finish, then retry",
                        self.limits.max_concurrent_per_principal
                    )));
                }
                let permit = self.wait(Arc::clone(&share.slots), deadline).await;
                share.waiting.fetch_sub(1, Ordering::SeqCst);
                permit?
            }
        };
        let shared = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.limits.max_queued {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(GatewayError::Overloaded(format!(
                        "the gateway is running {} queries and {} more are waiting; retry shortly",
                        self.limits.max_concurrent, self.limits.max_queued
                    )));
                }
                let permit = self.wait(Arc::clone(&self.slots), deadline).await;
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                permit?
            }
        };
        Ok(Slot {
            _shared: shared,
            _own: own,
        })
    }

    async fn wait(
        &self,
        slots: Arc<Semaphore>,
        deadline: Option<Instant>,
    ) -> Result<OwnedSemaphorePermit, GatewayError> {
        let wait = slots.acquire_owned();
        let permit = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), wait).await.ok(),
            None => Some(wait.await),
        };
        match permit {
            Some(Ok(permit)) => Ok(permit),
            Some(Err(_)) => Err(GatewayError::Unavailable(
                "the gateway is shutting down".into(),
            )),
            None => Err(GatewayError::DeadlineExceeded(format!(
                "the query waited for a slot longer than its time limit of {:?}",
                self.limits.timeout.unwrap_or_default()
            ))),
        }
    }
}

/// A query's stream with its slot, deadline and cancellation attached: it ends with an
/// error as soon as the query is cancelled or runs out of time, and its slot is released
/// when it is dropped.
pub(crate) struct Guarded {
    inner: Option<SendableRecordBatchStream>,
    schema: SchemaRef,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    deadline: Option<(Pin<Box<tokio::time::Sleep>>, Duration)>,
    _slot: Arc<Slot>,
}

impl Guarded {
    pub(crate) fn new(
        inner: SendableRecordBatchStream,
        cancel: &CancellationToken,
        deadline: Option<(Instant, Duration)>,
        slot: Arc<Slot>,
    ) -> Self {
        Self {
            schema: inner.schema(),
            inner: Some(inner),
            cancelled: Box::pin(cancel.clone().cancelled_owned()),
            deadline: deadline
                .map(|(at, limit)| (Box::pin(tokio::time::sleep_until(at.into())), limit)),
            _slot: slot,
        }
    }

    fn abort(&mut self, why: Abort) -> Poll<Option<Result<RecordBatch>>> {
        // Dropping the plan's stream stops its work.
        self.inner = None;
        Poll::Ready(Some(Err(DataFusionError::External(Box::new(why)))))
    }
}

impl Stream for Guarded {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.inner.is_none() {
            return Poll::Ready(None);
        }
        if self.cancelled.poll_unpin(cx).is_ready() {
            return self.abort(Abort::Cancelled);
        }
        if let Some((sleep, limit)) = &mut self.deadline
            && sleep.poll_unpin(cx).is_ready()
        {
            let limit = *limit;
            return self.abort(Abort::TimedOut(limit));
        }
        match &mut self.inner {
            Some(inner) => inner.as_mut().poll_next(cx),
            None => Poll::Ready(None),
        }
    }
}

impl RecordBatchStream for Guarded {
    fn schema(&self) -> SchemaRef {
        SchemaRef::clone(&self.schema)
    }
}

/// One query's share of the gateway's memory pool: everything it reserves counts against
/// both its own cap and the shared pool. Operators that can spill do so when the cap is hit.
#[derive(Debug)]
pub(crate) struct QueryPool {
    shared: Arc<dyn MemoryPool>,
    cap: usize,
    used: AtomicUsize,
}

impl QueryPool {
    pub(crate) fn new(shared: Arc<dyn MemoryPool>, cap: usize) -> Self {
        Self {
            shared,
            cap,
            used: AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "QueryPool(cap: {} bytes, over {})",
            self.cap, self.shared
        )
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "QueryPool"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.shared.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.shared.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.shared.grow(reservation, additional);
        self.used.fetch_add(additional, Ordering::SeqCst);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.shared.shrink(reservation, shrink);
        self.used.fetch_sub(shrink, Ordering::SeqCst);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        // Reserve against the cap atomically first, so two operators of one query cannot
        // both pass the check and overshoot it together.
        let reserved = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(additional)
                    .filter(|total| *total <= self.cap)
            });
        if let Err(used) = reserved {
            return Err(resources_datafusion_err!(
                "the query needs more than its memory limit of {} MiB ({} reserving {} bytes with {} in use)",
                self.cap >> 20,
                reservation.consumer().name(),
                additional,
                used
            ));
        }
        if let Err(e) = self.shared.try_grow(reservation, additional) {
            self.used.fetch_sub(additional, Ordering::SeqCst);
            return Err(e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.cap)
    }
}

/// Makes every join give its thread back regularly. A join can emit many batches for one
/// input batch (a nested-loop join over two large inputs can run for minutes without asking
/// its input for more), and a task that never yields can neither be cancelled nor time out:
/// dropping its stream only takes effect at the task's next yield. Wrapping each join in
/// DataFusion's [`CooperativeExec`] spends the task's scheduling budget per output batch.
#[derive(Debug, Default)]
pub(crate) struct YieldAfterJoins;

impl PhysicalOptimizerRule for YieldAfterJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if node.children().len() > 1 {
                let wrapped: Arc<dyn ExecutionPlan> = Arc::new(CooperativeExec::new(node));
                Ok(Transformed::yes(wrapped))
            } else {
                Ok(Transformed::no(node))
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "yield_after_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
