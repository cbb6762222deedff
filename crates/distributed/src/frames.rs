//! The first gRPC message of a request body, read off the wire and put back: what a stage
//! signature covers. A gRPC message is a 5-byte prefix (compression flag, big-endian length)
//! and the message's bytes; the signature covers both, exactly as they travel.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, BodyStream, StreamBody};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The largest first message read (a stage plan); beyond it the request is refused.
pub(crate) const MAX_MESSAGE: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("the first message is larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    #[error("the request body failed: {0}")]
    Body(BoxError),
}

/// The first message of `body` (prefix included; empty when the body has none), and a body
/// that yields everything `body` would have, that message first.
pub(crate) async fn first_message<B>(mut body: B) -> Result<(Bytes, tonic::body::Body), FrameError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let mut read = BytesMut::new();
    let mut ended = false;
    let mut held: Option<Frame<Bytes>> = None;
    let wanted = loop {
        if read.len() >= 5 {
            let len = u32::from_be_bytes([read[1], read[2], read[3], read[4]]) as usize;
            if len > MAX_MESSAGE {
                return Err(FrameError::TooLarge);
            }
            if read.len() >= 5 + len {
                break 5 + len;
            }
        }
        match body.frame().await {
            None => {
                ended = true;
                break read.len();
            }
            Some(Err(e)) => return Err(FrameError::Body(e.into())),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => read.extend_from_slice(&data),
                // Trailers: nothing more will come.
                Err(frame) => {
                    held = Some(frame);
                    ended = true;
                    break read.len();
                }
            },
        }
    };
    let read = read.freeze();
    let message = read.slice(..wanted);
    let head = futures::stream::iter(
        std::iter::once(Frame::data(read))
            .chain(held)
            .map(Ok::<_, BoxError>),
    );
    let rebuilt = if ended {
        tonic::body::Body::new(StreamBody::new(head))
    } else {
        let rest = BodyStream::new(body).map(|frame| frame.map_err(Into::into));
        tonic::body::Body::new(StreamBody::new(head.chain(rest)))
    };
    Ok((message, rebuilt))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    #[tokio::test]
    async fn the_first_message_is_read_across_chunks_and_the_body_is_unchanged() {
        let mut wire = framed(b"the plan");
        wire.extend(framed(b"more"));
        let chunks: Vec<Result<Frame<Bytes>, BoxError>> = wire
            .chunks(3)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = StreamBody::new(futures::stream::iter(chunks));
        let (message, rebuilt) = first_message(body).await.expect("read");
        assert_eq!(message.as_ref(), framed(b"the plan").as_slice());
        let all = rebuilt.collect().await.expect("body").to_bytes();
        assert_eq!(all.as_ref(), wire.as_slice());
    }
}
