//! Query limits: how many queries run at once (and how many wait), how long one may take,
//! and how much memory one may use. A query over any limit fails with a clear error; none
//! is allowed to take the process down.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

use crate::error::GatewayError;

/// Limits on every query.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Queries running at once; further queries wait in a queue.
    pub max_concurrent: usize,
    /// Queries waiting for a slot; beyond this a query is refused at once.
    pub max_queued: usize,
    /// How long a query may take, from admission to its last batch.
    pub timeout: Option<Duration>,
    /// Memory one query may use (sorts, joins and aggregates spill to disk first).
    pub memory: Option<usize>,
}

impl Default for QueryLimits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Self {
            max_concurrent: cores * 2,
            max_queued: 64,
            timeout: None,
            memory: None,
        }
    }
}

/// Why a running query stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Abort {
    #[error("the query was cancelled")]
    Cancelled,
    #[error("the query took longer than its limit of {0:?}")]
    TimedOut(Duration),
}

/// The admission queue.
#[derive(Debug)]
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    limits: QueryLimits,
}

impl Admission {
    pub(crate) fn new(limits: QueryLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            waiting: AtomicUsize::new(0),
            limits,
        }
    }

    pub(crate) fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// A running slot: at once if one is free, after waiting in the queue otherwise.
    pub(crate) async fn admit(
        &self,
        deadline: Option<Instant>,
    ) -> Result<OwnedSemaphorePermit, GatewayError> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.limits.max_queued {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(GatewayError::Overloaded(format!(
                "the gateway is running {} queries and {} more are waiting; retry shortly",
                self.limits.max_concurrent, self.limits.max_queued
            )));
        }
        let wait = Arc::clone(&self.slots).acquire_owned();
        let permit = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), wait).await.ok(),
            None => Some(wait.await),
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
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
    _slot: Arc<OwnedSemaphorePermit>,
}

impl Guarded {
    pub(crate) fn new(
        inner: SendableRecordBatchStream,
        cancel: &CancellationToken,
        deadline: Option<(Instant, Duration)>,
        slot: Arc<OwnedSemaphorePermit>,
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
