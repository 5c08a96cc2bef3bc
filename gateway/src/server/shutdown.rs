//! Shutdown signals, told to readiness first. pingora closes its listeners
//! as soon as it sees SIGTERM, which leaves a load balancer no moment to
//! notice that `/readyz` went 503; so on SIGTERM this watch marks the node
//! draining and keeps serving for `server.drain_delay` before handing the
//! signal on. On SIGQUIT (an in-place upgrade) pingora itself keeps
//! accepting for a few seconds after passing the sockets on, so draining
//! is marked and the signal passed on at once. SIGINT stays the fast stop.

use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

use crate::admin::ready::Draining;

pub struct DrainingSignals {
    pub draining: Draining,
    pub delay: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for DrainingSignals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut terminate), Ok(mut interrupt)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            // Without handlers the default actions apply: the process ends
            // on the signal, as a plain program would.
            tracing::error!("cannot install the shutdown signal handlers");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = quit.recv() => {
                tracing::info!("SIGQUIT: draining (readyz 503); handing the listeners over");
                self.draining.start();
                ShutdownSignal::GracefulUpgrade
            }
            _ = terminate.recv() => {
                self.draining.start();
                tracing::info!(
                    drain_delay = ?self.delay,
                    "SIGTERM: draining (readyz 503); listeners close after the drain delay"
                );
                tokio::select! {
                    _ = tokio::time::sleep(self.delay) => ShutdownSignal::GracefulTerminate,
                    // A second signal is an operator who will not wait.
                    _ = terminate.recv() => ShutdownSignal::GracefulTerminate,
                    _ = interrupt.recv() => ShutdownSignal::FastShutdown,
                }
            }
            _ = interrupt.recv() => ShutdownSignal::FastShutdown,
        }
    }
}
