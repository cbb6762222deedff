//! The worker's side of the channel: a request whose stage signature does not verify is
//! refused with PERMISSION_DENIED before anything in it is decoded, and logged. A stage plan
//! (the first message of a coordinator channel) is accepted once: the same signed plan sent
//! again is a replay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use http_body_util::BodyExt;
use tonic::body::Body;
use tower::{Layer, Service};

use crate::frames::{BoxError, first_message};
use crate::signing::{EXPIRES_HEADER, Refusal, SIGNATURE_HEADER, StageSigner, now};

/// The request that carries a stage plan.
pub const SET_PLAN_PATH: &str = "/worker.WorkerService/CoordinatorChannel";

/// Stage plans seen and not yet expired, by signature (bounded: when full of unexpired
/// entries, new plans are refused rather than remembered less).
#[derive(Debug, Default)]
pub(crate) struct Seen(Mutex<HashMap<String, u64>>);

const MAX_SEEN: usize = 200_000;

impl Seen {
    fn first_time(&self, signature: &str, expires: u64) -> Result<(), Refusal> {
        let Ok(mut seen) = self.0.lock() else {
            return Err(Refusal::Replayed);
        };
        if seen.len() >= MAX_SEEN {
            let now = now();
            seen.retain(|_, e| *e >= now);
            if seen.len() >= MAX_SEEN {
                return Err(Refusal::Replayed);
            }
        }
        match seen.insert(signature.to_string(), expires) {
            None => Ok(()),
            Some(_) => Err(Refusal::Replayed),
        }
    }
}

/// Wraps a worker's service in [`Guard`].
#[derive(Clone)]
pub struct GuardLayer {
    signer: Arc<StageSigner>,
    seen: Arc<Seen>,
    refused: Arc<std::sync::atomic::AtomicU64>,
    sent: Arc<std::sync::atomic::AtomicU64>,
}

impl GuardLayer {
    pub(crate) fn new(
        signer: Arc<StageSigner>,
        refused: Arc<std::sync::atomic::AtomicU64>,
        sent: Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        Self {
            signer,
            seen: Arc::default(),
            refused,
            sent,
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            signer: Arc::clone(&self.signer),
            seen: Arc::clone(&self.seen),
            refused: Arc::clone(&self.refused),
            sent: Arc::clone(&self.sent),
        }
    }
}

/// A worker's service behind the signature check.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    signer: Arc<StageSigner>,
    seen: Arc<Seen>,
    refused: Arc<std::sync::atomic::AtomicU64>,
    sent: Arc<std::sync::atomic::AtomicU64>,
}

impl<S, B> Service<Request<Body>> for Guard<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (signer, seen, refused, sent) = (
            Arc::clone(&self.signer),
            Arc::clone(&self.seen),
            Arc::clone(&self.refused),
            Arc::clone(&self.sent),
        );
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let path = parts.uri.path().to_string();
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let (expires, signature) = (header(EXPIRES_HEADER), header(SIGNATURE_HEADER));
            let checked = match first_message(body).await {
                Err(_) => Err(Refusal::Malformed),
                Ok((message, body)) => signer
                    .verify(&path, &message, expires.as_deref(), signature.as_deref())
                    .and_then(|()| {
                        if path != SET_PLAN_PATH {
                            return Ok(());
                        }
                        let expires = expires.as_deref().and_then(|e| e.parse().ok());
                        match (signature.as_deref(), expires) {
                            (Some(s), Some(e)) => seen.first_time(s, e),
                            _ => Err(Refusal::Unsigned),
                        }
                    })
                    .map(|()| body),
            };
            match checked {
                Ok(body) => {
                    let response = inner.call(Request::from_parts(parts, body)).await?;
                    // What the worker sends (stage outputs: shuffles and results), counted.
                    Ok(response.map(|body| {
                        Body::new(body.map_frame(move |frame| {
                            if let Some(data) = frame.data_ref() {
                                sent.fetch_add(
                                    data.len() as u64,
                                    std::sync::atomic::Ordering::Relaxed,
                                );
                            }
                            frame
                        }))
                    }))
                }
                Err(refusal) => {
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(
                        path = %path,
                        reason = %refusal,
                        "refused a request that is not from a gateway of this mesh"
                    );
                    let status = tonic::Status::permission_denied(format!(
                        "this worker runs only stages signed by its gateways: {refusal}"
                    ));
                    Ok(status.into_http())
                }
            }
        })
    }
}
