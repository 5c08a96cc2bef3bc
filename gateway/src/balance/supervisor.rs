//! Keeps the live plan's balancers resolved, probed and reported: one task
//! per upstream, replaced when a reload swaps the plan (a new plan's
//! balancers start with fresh health state, from the addresses resolved
//! when it compiled).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::task::JoinHandle;

use crate::plan::Plan;
use crate::server::reload::Live;

/// How soon after a reload the new plan's balancers are maintained.
const WATCH_EVERY: Duration = Duration::from_millis(250);

pub struct Supervisor {
    live: Arc<Live>,
}

impl Supervisor {
    pub fn new(live: Arc<Live>) -> Supervisor {
        Supervisor { live }
    }
}

struct Running {
    plan: Arc<Plan>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    fn start(plan: Arc<Plan>, live: &Live) -> Running {
        let tasks = plan
            .balancers
            .iter()
            .map(|b| tokio::spawn(b.clone().maintain(live.metrics.clone())))
            .collect();
        Running { plan, tasks }
    }

    fn stop(self, live: &Live) {
        for task in &self.tasks {
            task.abort();
        }
        for balancer in &self.plan.balancers {
            balancer.forget(&live.metrics.targets);
        }
    }
}

#[async_trait]
impl BackgroundService for Supervisor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut running = Running::start(self.live.plan(), &self.live);
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let plan = self.live.plan();
                    if !Arc::ptr_eq(&plan, &running.plan) {
                        running.stop(&self.live);
                        running = Running::start(plan, &self.live);
                    }
                }
                _ = shutdown.changed() => {
                    running.stop(&self.live);
                    return;
                }
            }
        }
    }
}
