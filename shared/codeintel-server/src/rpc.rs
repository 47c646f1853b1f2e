//! The tower middleware every service's gRPC server runs under ([`crate::serve`] installs it):
//! for each RPC, the request span (a child of the caller's `traceparent`), and on completion one
//! count and one latency observation by method and *final* status. The final status of a
//! streaming RPC is the `grpc-status` of its trailers, so an `Answer` that fails inside its
//! stream counts as that failure, and a client that goes away mid-stream counts as `Cancelled`.
//!
//! Admission runs here too, ahead of the handlers ([`crate::admission`]): authentication, the
//! token's rate, and the bounded slots and queue; a refused request is counted with its code
//! like any other. A request the server could not decode (garbage protobuf, a bad frame) is
//! INVALID_ARGUMENT, not INTERNAL: the fault is the caller's.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::admission::{self, Admission};
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

/// The deadline a request carries (`grpc-timeout`: an integer and a unit, H M S m u n).
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    headers.get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout)
}

/// A decode failure of the request (tonic reports INTERNAL) becomes INVALID_ARGUMENT.
fn caller_faults_are_invalid_argument(headers: &mut http::HeaderMap) {
    if grpc_status(headers) != Some(tonic::Code::Internal as i32) {
        return;
    }
    let msg = headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or("");
    let decoded = msg.replace("%20", " ");
    if decoded.starts_with("failed to decode Protobuf message")
        || decoded.starts_with("protocol error: received message")
    {
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
        let m = format!("the request is not a valid message of this RPC ({decoded})").replace(' ', "%20");
        if let Ok(v) = http::HeaderValue::from_str(&m) {
            headers.insert("grpc-message", v);
        }
    }
}

/// Installs [`RpcService`] around a router.
#[derive(Clone)]
pub struct RpcLayer {
    metrics: Metrics,
    admission: Arc<Admission>,
}

impl RpcLayer {
    pub fn new(metrics: Metrics, admission: Arc<Admission>) -> Self {
        Self { metrics, admission }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService { inner, metrics: self.metrics.clone(), admission: self.admission.clone() }
    }
}

#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: Metrics,
    admission: Arc<Admission>,
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
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body + Default,
{
    type Response = http::Response<RecordedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let path = req.uri().path().to_string();
        let (method, span_name) = method_names(&path);
        let span = if traced(&path) {
            crate::telemetry::server_span(&span_name, req.headers())
        } else {
            tracing::Span::none()
        };
        let mut recorder = Recorder { metrics: self.metrics.clone(), method, started: Instant::now(), done: false };
        let admission = self.admission.clone();
        // The service that was polled ready serves this request; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(
            async move {
                let mut permit = None;
                if !admission::exempt(&path) {
                    let refused = match admission.authenticate(req.headers()) {
                        Err(r) => Err(r),
                        Ok(principal) => match admission.slot(grpc_timeout(req.headers())).await {
                            Err(r) => Err(r),
                            Ok(p) => {
                                permit = Some(p);
                                if let Some(principal) = principal {
                                    req.extensions_mut().insert(principal);
                                }
                                Ok(())
                            }
                        },
                    };
                    if let Err(r) = refused {
                        admission.count(&r);
                        tracing::info!(code = ?r.code, reason = r.reason, "request refused: {}", r.message);
                        recorder.finish(r.code as i32);
                        let resp = r.into_http::<ResBody>();
                        return Ok(resp.map(|body| RecordedBody { inner: body, recorder, permit: None }));
                    }
                }
                match inner.call(req).await {
                    Ok(mut resp) => {
                        caller_faults_are_invalid_argument(resp.headers_mut());
                        // Trailers-only responses (errors before any message) carry the status
                        // in the headers; otherwise it comes with the trailers at the end.
                        if let Some(code) = grpc_status(resp.headers()) {
                            recorder.finish(code);
                        }
                        Ok(resp.map(|body| RecordedBody { inner: body, recorder, permit }))
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
        // The admission slot, held until the response (an Answer's whole stream) ends: freed
        // with its last frame, or when the body is dropped (a client gone).
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    }
}

impl<B: Body> Body for RecordedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let mut frame = ready!(this.inner.poll_frame(cx));
        if let Some(t) = frame.as_mut().and_then(|f| f.as_mut().ok()).and_then(|f| f.trailers_mut()) {
            caller_faults_are_invalid_argument(t);
        }
        let ended = match &frame {
            Some(Ok(f)) => {
                if let Some(code) = f.trailers_ref().and_then(grpc_status) {
                    this.recorder.finish(code);
                }
                f.is_trailers()
            }
            Some(Err(_)) => {
                this.recorder.finish(tonic::Code::Internal as i32);
                true
            }
            // The end without a status in the trailers: an OK unary response.
            None => {
                this.recorder.finish(tonic::Code::Ok as i32);
                true
            }
        };
        // The slot frees with the last frame, before the client can see it: a caller that
        // sends its next request on the trailers must not find its own finished one running.
        if ended {
            this.permit.take();
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

    /// A body of the given frames, in order.
    struct Frames(std::collections::VecDeque<Frame<tonic::codegen::Bytes>>);

    impl Body for Frames {
        type Data = tonic::codegen::Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    #[tokio::test]
    async fn the_admission_slot_frees_with_the_last_frame_not_when_the_body_is_dropped() {
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames = Frames([Frame::data(tonic::codegen::Bytes::from_static(b"x")), Frame::trailers(trailers)].into());
        let recorder =
            Recorder { metrics: Metrics::new("test"), method: "Search".into(), started: Instant::now(), done: false };
        let permit = Some(slots.clone().try_acquire_owned().unwrap());
        let mut body = Box::pin(RecordedBody { inner: frames, recorder, permit });
        let first = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        assert!(first.unwrap().unwrap().is_data());
        assert_eq!(slots.available_permits(), 0, "held while the response streams");
        let last = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        assert!(last.unwrap().unwrap().is_trailers());
        assert_eq!(slots.available_permits(), 1, "free as the trailers leave, with the body still alive");
        drop(body);
        assert_eq!(slots.available_permits(), 1);
    }

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

    #[test]
    fn grpc_timeouts_parse_and_decode_failures_become_invalid_argument() {
        assert_eq!(parse_grpc_timeout("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("100u"), Some(Duration::from_micros(100)));
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(parse_grpc_timeout("1234567890S"), None, "at most 8 digits");
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", "13".parse().unwrap());
        h.insert("grpc-message", "failed%20to%20decode%20Protobuf%20message:%20invalid%20wire%20type".parse().unwrap());
        caller_faults_are_invalid_argument(&mut h);
        assert_eq!(h["grpc-status"], "3");
        assert!(h["grpc-message"].to_str().unwrap().contains("not%20a%20valid%20message"));
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", "13".parse().unwrap());
        h.insert("grpc-message", "index%20broken".parse().unwrap());
        caller_faults_are_invalid_argument(&mut h);
        assert_eq!(h["grpc-status"], "13", "a server fault stays INTERNAL");
    }
}
