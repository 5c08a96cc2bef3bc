//! The end of a request: its outcome counted, logged and audited. Every
//! request passes here once, whoever answered it.

use pingora::proxy::Session;
use pingora::Error;

use crate::monitor::audit::{Decision, Entry};
use crate::monitor::metrics::NO_ROUTE;
use crate::monitor::traces::RequestSpans;
use crate::proxy::context::RequestCtx;
use crate::proxy::Gateway;
use crate::stage::record::{logged_path, Finished};
use crate::transport::conn_guard::GuardedStream;

impl Gateway {
    pub(crate) fn finish(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if let Some(report) = &ctx.sub_outcome {
            // A subrequest of ours: the main request logs and counts it.
            if let Ok(mut report) = report.lock() {
                report.outcome = ctx.outcome;
                report.upstream = ctx.upstream;
            }
            return;
        }
        let req = session.req_header();
        let tls = session.digest().and_then(|d| d.ssl_digest.as_ref());
        let finished = Finished {
            request_id: &ctx.request_id,
            trace_id: &ctx.trace.trace_id,
            partner: ctx.partner.as_deref(),
            key_id: ctx.key_id.as_deref(),
            route: ctx.route.as_ref().map_or(NO_ROUTE, |r| r.name.as_str()),
            method: req.method.as_str(),
            path: logged_path(ctx.outcome, ctx.canonical_path.as_deref(), req.uri.path()),
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            outcome: ctx.outcome,
            elapsed: ctx.started.elapsed(),
            stages: ctx.stages,
            bytes_in: session.body_bytes_read() as u64,
            bytes_out: session.body_bytes_sent() as u64,
            client_ip: ctx.client_ip,
            peer_ip: ctx.peer_ip,
            tls: tls.map(|t| (t.version.as_ref(), t.cipher.as_ref())),
            object: ctx.object.as_ref().map(|o| &o.named),
        };
        let decision = finished.decision();
        self.count(&finished, decision);
        // The query string is never logged: partners put secrets in it.
        tracing::info!(
            target: "portcullis::access",
            request_id = %finished.request_id,
            trace_id = %finished.trace_id,
            method = %finished.method,
            path = finished.path,
            route = finished.route,
            partner = finished.partner,
            key_id = finished.key_id,
            client_ip = finished.client_ip.map(tracing::field::display),
            peer_ip = finished.peer_ip.map(tracing::field::display),
            upstream_addr = ctx.upstream.addr.map(tracing::field::display),
            upstream_attempts = ctx.upstream.attempts,
            status = finished.status,
            outcome = finished.outcome.code(),
            duration_ms = finished.elapsed.as_secs_f64() * 1000.0,
            error = e.map(|e| e.etype().as_str()),
        );
        if let Some(export) = self.monitor.traces.as_ref().filter(|_| ctx.trace.sampled) {
            export.record(&RequestSpans {
                trace: &ctx.trace,
                finished: &finished,
                started: ctx.started,
                upstream_name: ctx.route.as_ref().map(|r| r.upstream.name.as_str()),
                upstream_addr: ctx.upstream.addr,
                upstream_attempts: ctx.upstream.attempts,
                error: e.map(|e| e.etype().as_str()),
            });
        }
        if self.monitor.audit.wants(decision) {
            self.monitor
                .audit
                .submit(Entry::request(finished.audit_record()));
        }
        if let Some(guard) = session.stream().and_then(GuardedStream::of) {
            guard.await_next_request();
        }
    }

    /// Every metric a finished request moves.
    fn count(&self, f: &Finished<'_>, decision: Decision) {
        let metrics = &self.live.metrics;
        let status_label = f.status.to_string();
        metrics
            .requests
            .with_label_values(&[
                f.route,
                status_label.as_str(),
                decision.as_str(),
                f.outcome.code(),
            ])
            .inc();
        metrics
            .request_duration
            .with_label_values(&[f.route])
            .observe(f.elapsed.as_secs_f64());
        for (stage, time) in f.stages.named() {
            if let Some(time) = time {
                metrics
                    .stage_duration
                    .with_label_values(&[f.route, stage])
                    .observe(time.busy.as_secs_f64());
            }
        }
        if let Some(kind) = f.outcome.upstream_failure() {
            metrics
                .upstream_errors
                .with_label_values(&[f.route, kind])
                .inc();
        }
        if let Some(label) = f.partner.and_then(|p| self.monitor.partner_labels.label(p)) {
            metrics
                .partner_requests
                .with_label_values(&[label, decision.as_str()])
                .inc();
            self.monitor
                .anomaly
                .observe(label, decision != Decision::Allow || f.status >= 500);
        }
    }
}
