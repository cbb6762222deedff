//! The gateway's (and a worker's, for a shuffle) side of the channel: every request to a
//! worker leaves signed (see [`crate::signing`]).

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use tonic::body::Body;
use tower::Service;

use crate::frames::first_message;
use crate::signing::{EXPIRES_HEADER, SIGNATURE_HEADER, StageSigner};

/// A channel whose requests carry a stage signature.
#[derive(Clone)]
pub(crate) struct Signing<S> {
    pub(crate) inner: S,
    pub(crate) signer: Arc<StageSigner>,
}

impl<S> Service<Request<Body>> for Signing<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was polled ready makes the call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let signer = Arc::clone(&self.signer);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let body = match first_message(body).await {
                Ok((message, body)) => {
                    let (expires, signature) = signer.sign(parts.uri.path(), &message);
                    for (name, value) in [(EXPIRES_HEADER, expires), (SIGNATURE_HEADER, signature)]
                    {
                        if let Ok(value) = HeaderValue::from_str(&value) {
                            parts.headers.insert(name, value);
                        }
                    }
                    body
                }
                // The worker refuses an unsigned request, saying so.
                Err(e) => {
                    tracing::error!(error = %e, "cannot sign a request to a worker");
                    Body::empty()
                }
            };
            inner.call(Request::from_parts(parts, body)).await
        })
    }
}
