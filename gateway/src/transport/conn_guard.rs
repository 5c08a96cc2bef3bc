//! The connection guard: the first stage, below HTTP parsing.
//!
//! - Slow headers. pingora only times out each individual read, so a client
//!   trickling one byte at a time could hold a connection forever. Here the
//!   whole header block of each request must arrive within one deadline:
//!   the deadline runs from the connection's start (first request) or the
//!   request's first byte (later requests on a kept-alive connection), and
//!   the proxy disarms it once pingora has parsed the header.
//! - Parser refusals. When pingora's own HTTP/1 parser refuses a request it
//!   answers with a bare 400 carrying `Server: Pingora`, before any hook of
//!   ours runs. Anything written while a header is still being read can
//!   only be that answer, so the guard replaces it with our problem+json
//!   400 (with HSTS and a request id, without a version banner). Over
//!   HTTP/2, pingora's one bare 400 (a confused authority) is swapped the
//!   same way, frame by frame, by `h2_refusal`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::Stream;
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest, TimingDigest};
use pingora::protocols::{Peek, Shutdown, SocketDigest, Ssl, UniqueID, UniqueIDType, ALPN};
use pingora::server::ShutdownWatch;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::transport::h2_clock::{Deadline, H2HeaderClock};
use crate::transport::h2_refusal::{self, ClientFrames, Outbound};

const WAITING_FOR_REQUEST: u8 = 0;
const READING_HEADER: u8 = 1;
const HEADER_DONE: u8 = 2;
const TIMED_OUT: u8 = 3;

/// Builds the complete HTTP/1 response sent in place of pingora's own 400,
/// given how long the refused request's request line was (so far): a
/// target too long for pingora's parser is a 414, not a malformed request.
pub type RefusalFactory = Arc<dyn Fn(usize) -> Vec<u8> + Send + Sync>;

/// Builds our answer in place of pingora's bare HTTP/2 400.
pub type H2RefusalFactory = Arc<dyn Fn() -> h2_refusal::Answer + Send + Sync>;

/// What the guard answers in place of pingora's own refusals.
#[derive(Clone)]
pub struct Refusals {
    pub http1: RefusalFactory,
    pub h2: H2RefusalFactory,
}

/// An HTTP/2 connection's output on its way through the guard.
struct H2Output {
    client: ClientFrames,
    outbound: Outbound,
    /// Rewritten output not yet written to the connection, from `written` on.
    pending: Vec<u8>,
    written: usize,
    /// Held output passed its limit: the connection is given up on.
    broken: bool,
}

pub struct GuardedStream {
    inner: Stream,
    on_timeout: IntCounter,
    refusal: RefusalFactory,
    h2_refusal: H2RefusalFactory,
    h2_output: Option<Box<H2Output>>,
    /// Bytes of our refusal not yet written; `Some` once a refusal started.
    refusal_pending: Option<(Vec<u8>, usize)>,
    phase: AtomicU8,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    /// HTTP/2 connections: their writes are never rewritten, and the
    /// deadline covers the connection preface and then each header block
    /// (HEADERS up to the frame with END_HEADERS), as `h2_clock` reads
    /// them from the client's bytes; idle time is pingora's business.
    h2: bool,
    clock: Option<H2HeaderClock>,
    /// Bytes of the current request's request line read so far, and
    /// whether its end has been seen.
    request_line: usize,
    request_line_done: bool,
    /// Read what the client still sends before closing (see `poll_linger`).
    linger: std::sync::atomic::AtomicBool,
    /// The end of the lingering read, once it started; `None` after it.
    linger_until: Option<Pin<Box<Sleep>>>,
    linger_done: bool,
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .finish()
    }
}

impl GuardedStream {
    /// Wraps a fresh connection; its first header is due within `timeout`.
    pub fn new(
        inner: Stream,
        timeout: Duration,
        on_timeout: IntCounter,
        refusals: Refusals,
    ) -> Self {
        GuardedStream {
            inner,
            on_timeout,
            refusal: refusals.http1,
            h2_refusal: refusals.h2,
            h2_output: None,
            refusal_pending: None,
            phase: AtomicU8::new(READING_HEADER),
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            h2: false,
            clock: None,
            request_line: 0,
            request_line_done: false,
            linger: std::sync::atomic::AtomicBool::new(false),
            linger_until: None,
            linger_done: false,
        }
    }

    /// Wraps a fresh HTTP/2 connection: its preface is due within `timeout`.
    pub fn new_h2(
        inner: Stream,
        timeout: Duration,
        on_timeout: IntCounter,
        refusals: Refusals,
    ) -> Self {
        GuardedStream {
            h2: true,
            clock: Some(H2HeaderClock::new()),
            h2_output: Some(Box::new(H2Output {
                client: ClientFrames::new(),
                outbound: Outbound::new(),
                pending: Vec::new(),
                written: 0,
                broken: false,
            })),
            ..GuardedStream::new(inner, timeout, on_timeout, refusals)
        }
    }

    /// The current request's header has been parsed: stop the clock.
    pub fn header_complete(&self) {
        self.move_to(HEADER_DONE);
    }

    /// The response is done: the next request's header will start the clock
    /// with its first byte (idle time is the keep-alive timeout's business).
    pub fn await_next_request(&self) {
        self.move_to(WAITING_FOR_REQUEST);
    }

    /// The gateway refused a request whose bytes may still be arriving: if
    /// the connection is closed, drain them briefly first.
    pub fn linger_on_close(&self) {
        self.linger.store(true, Ordering::Release);
    }

    /// A connection that timed out stays timed out.
    fn move_to(&self, phase: u8) {
        let _ = self
            .phase
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                (p != TIMED_OUT).then_some(phase)
            });
    }

    /// Finds the wrapper behind a pingora stream, if the connection has one.
    pub fn of(stream: &Stream) -> Option<&GuardedStream> {
        stream.as_any().downcast_ref::<GuardedStream>()
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut phase = self.phase.load(Ordering::Acquire);
        if phase == READING_HEADER && self.deadline.as_mut().poll(cx).is_ready() {
            self.phase.store(TIMED_OUT, Ordering::Release);
            self.on_timeout.inc();
            phase = TIMED_OUT;
        }
        if phase == TIMED_OUT {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request header not received in time",
            )));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.h2 {
            let this = &mut *self;
            let fresh = &buf.filled()[before..];
            if let (Poll::Ready(Ok(())), false, Some(clock)) =
                (&result, fresh.is_empty(), this.clock.as_mut())
            {
                match clock.observe(fresh) {
                    Deadline::Restart => {
                        this.deadline.as_mut().reset(Instant::now() + this.timeout);
                        this.phase.store(READING_HEADER, Ordering::Release);
                        // Register the new deadline with this task's waker.
                        let _ = this.deadline.as_mut().poll(cx);
                    }
                    Deadline::Keep => {}
                    Deadline::Disarm => this.phase.store(HEADER_DONE, Ordering::Release),
                }
            }
            if matches!(result, Poll::Ready(Ok(()))) {
                this.observe_client(cx, &buf.filled()[before..]);
            }
            return result;
        }
        let read_some = matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        if phase == WAITING_FOR_REQUEST && read_some {
            self.request_line = 0;
            self.request_line_done = false;
        }
        if phase != HEADER_DONE && read_some && !self.request_line_done {
            let fresh = &buf.filled()[before..];
            match memchr::memchr(b'\n', fresh) {
                Some(end) => {
                    self.request_line += end;
                    self.request_line_done = true;
                }
                None => self.request_line += fresh.len(),
            }
        }
        if phase == WAITING_FOR_REQUEST && read_some {
            let at = Instant::now() + self.timeout;
            self.deadline.as_mut().reset(at);
            // Only start the clock if nobody marked the header done meanwhile.
            let _ = self.phase.compare_exchange(
                WAITING_FOR_REQUEST,
                READING_HEADER,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            // Register the new deadline with this task's waker.
            let _ = self.deadline.as_mut().poll(cx);
        }
        result
    }
}

impl GuardedStream {
    fn answering_refused_request(&self) -> bool {
        !self.h2
            && (self.refusal_pending.is_some()
                || self.phase.load(Ordering::Acquire) == READING_HEADER)
    }

    /// Writes our refusal (once), and reports pingora's bytes as written
    /// so they are dropped.
    fn poll_write_refusal(
        &mut self,
        cx: &mut Context<'_>,
        swallowed: usize,
    ) -> Poll<io::Result<usize>> {
        if self.refusal_pending.is_none() {
            self.refusal_pending = Some(((self.refusal)(self.request_line), 0));
        }
        while let Some((bytes, written)) = self.refusal_pending.as_mut() {
            if *written >= bytes.len() {
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(swallowed))
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.h2_output.is_some() {
            return self.poll_write_h2(cx, &[io::IoSlice::new(buf)]);
        }
        if self.answering_refused_request() {
            return self.poll_write_refusal(cx, buf.len());
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain_h2(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain_h2(cx))?;
        // pingora closes through `AsyncWriteExt::shutdown`, which lands here.
        std::task::ready!(self.poll_linger(cx));
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.h2_output.is_some() {
            return self.poll_write_h2(cx, bufs);
        }
        if self.answering_refused_request() {
            let total = bufs.iter().map(|b| b.len()).sum();
            return self.poll_write_refusal(cx, total);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        // HTTP/2 output is gathered into one buffer anyway: take h2's
        // frames all at once, so they go out in one write.
        self.h2_output.is_some() || self.inner.is_write_vectored()
    }
}

impl GuardedStream {
    /// HTTP/2 output goes through `Outbound` (see `h2_refusal`); what it
    /// lets out is written before any later output is taken.
    fn poll_write_h2(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_drain_h2(cx))?;
        let refusal = self.h2_refusal.clone();
        let Some(h2) = self.h2_output.as_deref_mut() else {
            return Poll::Ready(Ok(0));
        };
        let stream_window = h2.client.initial_stream_window();
        let mut taken = 0;
        for buf in bufs {
            h2.outbound
                .push(buf, &mut h2.pending, stream_window, &mut || refusal())
                .map_err(|_| held_too_much())?;
            taken += buf.len();
        }
        // The bytes are ours now; a full socket shows at the next write or flush.
        if let Poll::Ready(Err(e)) = self.poll_drain_h2(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(taken))
    }

    /// Writes the rewritten HTTP/2 output waiting to go out (output held
    /// for flow control is not waiting: it goes when the client opens its
    /// window).
    fn poll_drain_h2(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(h2) = self.h2_output.as_deref_mut() else {
            return Poll::Ready(Ok(()));
        };
        if h2.broken {
            return Poll::Ready(Err(held_too_much()));
        }
        while h2.written < h2.pending.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &h2.pending[h2.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => h2.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        h2.pending.clear();
        h2.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Reads flow-control credit from the client's bytes; held output the
    /// window now admits goes out (a write error shows at the next write).
    fn observe_client(&mut self, cx: &mut Context<'_>, fresh: &[u8]) {
        let refusal = self.h2_refusal.clone();
        let Some(h2) = self.h2_output.as_deref_mut() else {
            return;
        };
        h2.client.feed(fresh);
        let credit = h2.client.take_credit();
        let stream_window = h2.client.initial_stream_window();
        if h2
            .outbound
            .open_window(credit, &mut h2.pending, stream_window, &mut || refusal())
            .is_err()
        {
            h2.broken = true;
        }
        if !h2.pending.is_empty() {
            let _ = self.poll_drain_h2(cx);
        }
    }
}

fn held_too_much() -> io::Error {
    io::Error::other("HTTP/2 output held for flow control passed its limit")
}

/// How long a lingering close reads before it gives up (nginx's
/// `lingering_time` is 30 s; a refused upload on a real link finishes in
/// far less, and the time bound alone caps what a client can make us read).
const LINGER_TIME: Duration = Duration::from_secs(2);

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        let _ = std::future::poll_fn(|cx| self.poll_linger(cx)).await;
        self.inner.shutdown().await
    }
}

impl GuardedStream {
    /// Closing a socket with unread input makes the kernel send a reset,
    /// which can destroy our refusal before the client has read it (why
    /// nginx closes lingeringly). So after a refusal, a close first reads
    /// and drops what the client still sends, until it closes its end or
    /// `LINGER_TIME` passes; the answer is already out by then.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.linger_done
            || !self.linger.load(Ordering::Acquire)
            || self.phase.load(Ordering::Acquire) == TIMED_OUT
        {
            return Poll::Ready(());
        }
        let until = self
            .linger_until
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER_TIME)));
        if until.as_mut().poll(cx).is_ready() {
            self.linger_done = true;
            return Poll::Ready(());
        }
        let mut scratch = [0u8; 16 * 1024];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                Poll::Ready(_) => {
                    self.linger_done = true;
                    return Poll::Ready(());
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

/// A [`ServerApp`] that puts every connection under the guard before
/// handing it to the wrapped app.
pub struct ConnGuardApp<A> {
    inner: Arc<A>,
    timeout: Duration,
    on_timeout: IntCounter,
    refusals: Refusals,
}

impl<A> ConnGuardApp<A> {
    pub fn new(inner: A, timeout: Duration, on_timeout: IntCounter, refusals: Refusals) -> Self {
        ConnGuardApp {
            inner: Arc::new(inner),
            timeout,
            on_timeout,
            refusals,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnGuardApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (timeout, counter, refusal) =
            (self.timeout, self.on_timeout.clone(), self.refusals.clone());
        let stream: Stream = if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            Box::new(GuardedStream::new_h2(stream, timeout, counter, refusal))
        } else {
            Box::new(GuardedStream::new(stream, timeout, counter, refusal))
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
