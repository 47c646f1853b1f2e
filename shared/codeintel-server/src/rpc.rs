//! The tower middleware every service's gRPC server runs under ([`crate::serve`] installs it):
//! for each RPC, the request span (a child of the caller's `traceparent`), and on completion one
//! count and one latency observation by method and *final* status. The final status of a
//! streaming RPC is the `grpc-status` of its trailers, so an `Answer` that fails inside its
//! stream counts as that failure, and a client that goes away mid-stream counts as `Cancelled`.
//!
//! This is also where admission belongs: authentication, request limits and load shedding wrap
//! the same service, ahead of the handlers (see [`RpcLayer`]).

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::Metrics;

/// The method name of a gRPC path (`/codeintel.v1.AnswerService/Answer` -> `Answer`) and its
/// span name (`AnswerService/Answer`).
pub fn method_names(path: &str) -> (String, String) {
    let path = path.trim_start_matches('/');
    let (service, method) = path.rsplit_once('/').unwrap_or(("", path));
    let service = service.rsplit('.').next().unwrap_or(service);
    (method.to_string(), if service.is_empty() { method.to_string() } else { format!("{service}/{method}") })
}

/// The label of a `grpc-status` value: `OK`, else the code's name (`InvalidArgument`, ...).
pub fn status_label(code: i32) -> String {
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK".to_string(),
        c => format!("{c:?}"),
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok())
}

/// Whether requests to this path get a span of their own (not health checks and reflection,
/// which run every few hundred milliseconds).
fn traced(path: &str) -> bool {
    !(path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection."))
}

/// Installs [`RpcService`] around a router.
#[derive(Clone)]
pub struct RpcLayer {
    metrics: Metrics,
}

impl RpcLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: Metrics,
}

/// Records one RPC once, when its final status is known (or when it is dropped unfinished).
struct Recorder {
    metrics: Metrics,
    method: String,
    started: Instant,
    done: bool,
}

impl Recorder {
    fn finish(&mut self, code: i32) {
        if !self.done {
            self.done = true;
            let label = status_label(code);
            self.metrics.requests.with_label_values(&[&self.method, &label]).inc();
            self.metrics.latency.with_label_values(&[&self.method]).observe(self.started.elapsed().as_secs_f64());
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // The response (or its stream) was dropped before a status was sent: the client went
        // away or the connection failed.
        self.finish(tonic::Code::Cancelled as i32);
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Body,
{
    type Response = http::Response<RecordedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let path = req.uri().path().to_string();
        let (method, span_name) = method_names(&path);
        let span = if traced(&path) {
            crate::telemetry::server_span(&span_name, req.headers())
        } else {
            tracing::Span::none()
        };
        let mut recorder = Recorder { metrics: self.metrics.clone(), method, started: Instant::now(), done: false };
        let fut = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Box::pin(
            async move {
                let res = fut.await;
                match res {
                    Ok(resp) => {
                        // Trailers-only responses (errors before any message) carry the status
                        // in the headers; otherwise it comes with the trailers at the end.
                        if let Some(code) = grpc_status(resp.headers()) {
                            recorder.finish(code);
                        }
                        Ok(resp.map(|body| RecordedBody { inner: body, recorder }))
                    }
                    Err(e) => {
                        recorder.finish(tonic::Code::Internal as i32);
                        Err(e)
                    }
                }
            }
            .instrument(span),
        )
    }
}

pin_project! {
    /// A response body that records its RPC when the trailers (or the end) arrive.
    pub struct RecordedBody<B> {
        #[pin]
        inner: B,
        recorder: Recorder,
    }
}

impl<B: Body> Body for RecordedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(code) = f.trailers_ref().and_then(grpc_status) {
                    this.recorder.finish(code);
                }
            }
            Some(Err(_)) => this.recorder.finish(tonic::Code::Internal as i32),
            // The end without a status in the trailers: an OK unary response.
            None => this.recorder.finish(tonic::Code::Ok as i32),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_span_names_come_from_the_path() {
        assert_eq!(
            method_names("/codeintel.v1.AnswerService/Answer"),
            ("Answer".into(), "AnswerService/Answer".into())
        );
        assert_eq!(
            method_names("/arrow.flight.protocol.FlightService/DoGet"),
            ("DoGet".into(), "FlightService/DoGet".into())
        );
        assert_eq!(status_label(0), "OK");
        assert_eq!(status_label(4), "DeadlineExceeded");
        assert_eq!(status_label(8), "ResourceExhausted");
    }
}
