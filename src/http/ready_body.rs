//! A request body's first frame, taken in the connection's task if the connection has already
//! read it.
//!
//! hyper hands a request body from the connection's task to whoever reads it through a channel,
//! and the reader's taking of a frame wakes the connection's task. When the handler runs in a
//! task of its own, that wake-up lands just before the handler's first directory request, which
//! wakes ldap3's connection task too: two tasks woken from one poll, and tokio wakes a second
//! worker thread for one of them, a futex wake and a hop to another core on every request with
//! a body. Taken in the connection's own task instead (wrapped in [`super::inplace`]), the
//! frame's wake-up is answered in place.
//!
//! Only what is already there is taken: nothing waits for body bytes here, so admission (token,
//! quotas, the body's size limit) still comes before any wait for the body, in the handler. A
//! request with `Expect: 100-continue` is not looked at: polling its body is what tells hyper to
//! answer `100 Continue`, and that answer must wait for admission too.

use axum::http;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The request with its body's first frame taken if the connection has already read it (see the
/// module's notes), or as it is when the client waits for `100 Continue`.
pub async fn take_ready<B>(req: http::Request<B>) -> http::Request<Ahead<B>>
where
    B: Body<Data = Bytes> + Unpin,
{
    let (parts, mut body) = req.into_parts();
    if parts.headers.contains_key(http::header::EXPECT) || body.is_end_stream() {
        return http::Request::from_parts(parts, Ahead::untouched(body));
    }
    let body = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
        Poll::Pending => Ahead::untouched(body),
        Poll::Ready(None) => Ahead {
            first: None,
            rest: None,
        },
        // After the last frame the body's channel is no longer needed.
        Poll::Ready(Some(f)) => Ahead {
            first: Some(f),
            rest: (!body.is_end_stream()).then_some(body),
        },
    };
    http::Request::from_parts(parts, body)
}

/// A body whose first frame may already be in hand.
pub struct Ahead<B: Body> {
    first: Option<Result<Frame<B::Data>, B::Error>>,
    rest: Option<B>,
}

impl<B: Body> Ahead<B> {
    /// The body as it is, nothing taken.
    pub fn untouched(body: B) -> Self {
        Ahead {
            first: None,
            rest: Some(body),
        }
    }
}

impl<B: Body + Unpin> Body for Ahead<B>
where
    B::Data: Unpin,
    B::Error: Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        if let Some(f) = this.first.take() {
            return Poll::Ready(Some(f));
        }
        match this.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let ahead = match &self.first {
            Some(Ok(f)) => f.data_ref().map_or(0, |d| bytes::Buf::remaining(d) as u64),
            _ => 0,
        };
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + ahead);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + ahead);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::collections::VecDeque;

    /// A body that answers `Pending` where the script has `None`, and the frames otherwise.
    struct Scripted {
        steps: VecDeque<Option<&'static str>>,
        length: Option<u64>,
        sent: u64,
        polled: usize,
    }

    fn scripted(steps: &[Option<&'static str>], length: Option<u64>) -> Scripted {
        Scripted {
            steps: steps.iter().copied().collect(),
            length,
            sent: 0,
            polled: 0,
        }
    }

    impl Body for Scripted {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            let this = self.get_mut();
            this.polled += 1;
            match this.steps.pop_front() {
                None => Poll::Ready(None),
                Some(None) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Some(Some(s)) => {
                    this.sent += s.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(s.as_bytes())))))
                }
            }
        }

        fn is_end_stream(&self) -> bool {
            self.length.is_some_and(|n| n == self.sent)
        }

        fn size_hint(&self) -> SizeHint {
            match self.length {
                Some(n) => SizeHint::with_exact(n - self.sent),
                None => SizeHint::default(),
            }
        }
    }

    async fn taken(body: Scripted) -> Ahead<Scripted> {
        take_ready(http::Request::new(body)).await.into_body()
    }

    async fn text<B: Body<Data = Bytes> + Unpin>(body: Ahead<B>) -> String
    where
        B::Data: Unpin,
        B::Error: Unpin + std::fmt::Debug,
    {
        let bytes = body.collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_whole_body_already_read_is_taken_and_its_channel_dropped() {
        let ahead = taken(scripted(&[Some("{\"a\":1}")], Some(7))).await;
        assert!(
            ahead.rest.is_none(),
            "the body's channel is kept after its last frame"
        );
        assert_eq!(ahead.size_hint().exact(), Some(7));
        assert!(!ahead.is_end_stream());
        assert_eq!(text(ahead).await, "{\"a\":1}");
    }

    #[tokio::test]
    async fn a_body_not_yet_read_is_left_whole_after_one_look() {
        let ahead = taken(scripted(&[None, Some("ab"), Some("cd")], Some(4))).await;
        assert!(ahead.first.is_none());
        assert_eq!(
            ahead.rest.as_ref().unwrap().polled,
            1,
            "the body was waited for"
        );
        assert_eq!(ahead.size_hint().exact(), Some(4));
        assert_eq!(text(ahead).await, "abcd");
    }

    #[tokio::test]
    async fn a_first_part_is_put_ahead_of_the_rest() {
        let ahead = taken(scripted(&[Some("ab"), None, Some("cd")], Some(4))).await;
        assert!(ahead.first.is_some() && ahead.rest.is_some());
        assert_eq!(ahead.size_hint().exact(), Some(4));
        assert_eq!(text(ahead).await, "abcd");
    }

    #[tokio::test]
    async fn a_body_of_unknown_length_keeps_its_end() {
        let ahead = taken(scripted(&[Some("ab"), Some("cd")], None)).await;
        assert!(ahead.rest.is_some());
        assert_eq!(ahead.size_hint().lower(), 2);
        assert_eq!(ahead.size_hint().upper(), None);
        assert_eq!(text(ahead).await, "abcd");
    }

    #[tokio::test]
    async fn a_client_waiting_for_100_continue_has_its_body_left_alone() {
        let mut req = http::Request::new(scripted(&[Some("{}")], Some(2)));
        req.headers_mut().insert(
            http::header::EXPECT,
            http::HeaderValue::from_static("100-continue"),
        );
        let req = take_ready(req).await;
        assert!(req.headers().contains_key(http::header::EXPECT));
        let ahead = req.into_body();
        assert_eq!(
            ahead.rest.as_ref().unwrap().polled,
            0,
            "the body was polled"
        );
        assert!(ahead.first.is_none());
        assert_eq!(text(ahead).await, "{}");
    }

    #[tokio::test]
    async fn an_empty_body_is_not_polled() {
        let ahead = taken(scripted(&[], Some(0))).await;
        assert_eq!(ahead.rest.as_ref().unwrap().polled, 0);
        assert!(ahead.is_end_stream());
        assert_eq!(text(ahead).await, "");
    }

    #[tokio::test]
    async fn a_body_that_ends_at_once_is_empty() {
        let ahead = taken(scripted(&[], None)).await;
        assert!(ahead.first.is_none() && ahead.rest.is_none());
        assert!(ahead.is_end_stream());
        assert_eq!(text(ahead).await, "");
    }
}
