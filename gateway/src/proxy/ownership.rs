//! The ownership stage (`stage::own`) wired to the index: asked before
//! anything is forwarded, a pre-flight read sent when the route says so,
//! and held answers read back (`subrequest` calls [`read_answer`]).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use pingora::proxy::Session;

use crate::monitor::audit::ObjectNamed;
use crate::ownership::service::OwnershipIndex;
use crate::ownership::store::Claimed;
use crate::plan::{Plan, Route};
use crate::proxy::context::{ObjectSeen, RequestCtx};
use crate::proxy::subrequest::{self, SubReport, Ticket};
use crate::proxy::Gateway;
use crate::stage::own::{self, AnswerFacts, Decision, ObjectRule, ResourceAction};
use crate::stage::problem::{self, Reject};
use crate::stage::record::add_time;

impl Gateway {
    /// Decides on the object `id` a request names; `Ok(Err(_))` refuses it.
    /// Sets `ctx.object` either way, for the audit record and the answer.
    pub(crate) async fn check_object(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        plan: &Arc<Plan>,
        route: &Arc<Route>,
        id: String,
        caller: &str,
    ) -> pingora::Result<Result<(), Reject>> {
        let Some(rule) = route.object.as_ref() else {
            return Ok(Ok(()));
        };
        let started = Instant::now();
        let kind = rule.resource.kind.clone();
        ctx.object = Some(ObjectSeen {
            named: ObjectNamed {
                kind: kind.clone(),
                id: id.clone(),
                owner: None,
            },
            known: false,
        });
        let Some(index) = self.ownership.clone() else {
            return Ok(Err(problem::OWNERSHIP_UNAVAILABLE));
        };
        let owner = match index.owner(&kind, &id).await {
            Ok(owner) => owner,
            Err(e) => {
                tracing::warn!(target: "portcullis::ownership", request_id = %ctx.request_id, error = %e, "cannot look up an object's owner");
                return Ok(Err(problem::OWNERSHIP_UNAVAILABLE));
            }
        };
        let mut owner_now = owner.clone();
        let verdict = match own::decide(rule, owner.as_deref(), caller) {
            Decision::Forward => Ok(()),
            Decision::GuardAnswer => Ok(()),
            Decision::Refuse => Err(problem::OBJECT_NOT_FOUND),
            Decision::Preflight => {
                match self
                    .preflight(session, ctx, plan, route, rule, &id, caller, &index)
                    .await?
                {
                    Ok(found) if found == caller => {
                        owner_now = Some(found);
                        Ok(())
                    }
                    Ok(other) => {
                        owner_now = Some(other);
                        Err(problem::OBJECT_NOT_FOUND)
                    }
                    Err(reject) => Err(reject),
                }
            }
        };
        add_time(&mut ctx.stages.isolation, started);
        if let Some(seen) = ctx.object.as_mut() {
            seen.known = owner_now.as_deref() == Some(caller);
            seen.named.owner = owner_now.filter(|o| o != caller);
        }
        if verdict == Err(problem::OBJECT_NOT_FOUND) {
            refused(ctx, &index, &route.name, caller);
        }
        Ok(verdict)
    }

    /// Asks the upstream who owns `id` (the rule's pre-flight read) and
    /// records the answer. `Ok(owner)`, or why the request is refused.
    #[allow(clippy::too_many_arguments)]
    async fn preflight(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        plan: &Arc<Plan>,
        route: &Arc<Route>,
        rule: &ObjectRule,
        id: &str,
        caller: &str,
        index: &OwnershipIndex,
    ) -> pingora::Result<Result<String, Reject>> {
        let Some(template) = rule.preflight.as_deref() else {
            return Ok(Err(problem::OBJECT_NOT_FOUND));
        };
        let ticket = Ticket {
            plan: plan.clone(),
            route: route.clone(),
            partner: caller.to_string(),
            key_id: ctx.key_id.clone().unwrap_or_default(),
            request_id: ctx.request_id.clone(),
            trace: ctx.trace.clone(),
            new_target: Some(own::preflight_target(template, id)),
            body_len: 0,
            outcome: Arc::new(Mutex::new(SubReport::default())),
            preflight: true,
            object: None,
        };
        let answer = subrequest::preflight(session, ticket).await?;
        let count = |result: &str| {
            if let Some(s) = index.stats() {
                s.preflights.with_label_values(&[result]).inc();
            }
        };
        let failed = |why: &str| {
            tracing::warn!(
                target: "portcullis::ownership",
                request_id = %ctx.request_id,
                route = %route.name,
                kind = %rule.resource.kind,
                id,
                why,
                "pre-flight read could not say who owns the object; request refused"
            );
        };
        let Some(answer) = answer else {
            count("failed");
            failed("no complete answer");
            return Ok(Err(problem::PREFLIGHT_FAILED));
        };
        if matches!(answer.status, 404 | 410) {
            count("missing");
            return Ok(Err(problem::OBJECT_NOT_FOUND));
        }
        if !(200..300).contains(&answer.status) {
            count("failed");
            failed("answered with an error status");
            return Ok(Err(problem::PREFLIGHT_FAILED));
        }
        let owner = match own::answer_facts(&rule.resource, &answer.body) {
            // An answer about another object decides nothing.
            Ok(AnswerFacts {
                owner: Some(owner),
                id: answer_id,
            }) if answer_id.as_deref().is_none_or(|a| a == id)
                && crate::keys::store::valid_label(&owner) =>
            {
                owner
            }
            _ => {
                count("failed");
                failed("the answer names no owner for this object");
                return Ok(Err(problem::PREFLIGHT_FAILED));
            }
        };
        count(if owner == caller { "owner" } else { "other" });
        let kind = &rule.resource.kind;
        match index.learn(kind, id, &owner, "preflight").await {
            // Someone recorded it meanwhile: the index's word stands.
            Ok(Claimed::Other(recorded)) => Ok(Ok(recorded)),
            Ok(_) => Ok(Ok(owner)),
            Err(e) => {
                tracing::warn!(target: "portcullis::ownership", request_id = %ctx.request_id, error = %e, "cannot record a pre-flight's owner");
                Ok(Ok(owner))
            }
        }
    }

    /// After the upstream's answer refused an object (`read_answer`), the
    /// audit record names its owner.
    pub(crate) async fn note_answer_owner(&self, ctx: &mut RequestCtx) {
        let (Some(index), Some(seen)) = (self.ownership.as_ref(), ctx.object.as_mut()) else {
            return;
        };
        if let Ok(owner) = index.owner(&seen.named.kind, &seen.named.id).await {
            seen.named.owner = owner.filter(|o| Some(o.as_str()) != ctx.partner.as_deref());
        }
    }
}

/// Counts and logs a request refused for naming an object that is not the
/// caller's.
fn refused(ctx: &RequestCtx, index: &OwnershipIndex, route: &str, caller: &str) {
    if let Some(s) = index.stats() {
        s.refusals.with_label_values(&[route]).inc();
    }
    let Some(seen) = &ctx.object else { return };
    if let Some(owner) = &seen.named.owner {
        tracing::warn!(
            target: "portcullis::suspicious",
            request_id = %ctx.request_id,
            partner = %caller,
            owner = %owner,
            key_id = ctx.key_id.as_deref().unwrap_or("-"),
            route = %route,
            kind = %seen.named.kind,
            id = %seen.named.id,
            code = problem::OBJECT_NOT_FOUND.code,
            "request for another partner's object refused"
        );
    }
}

/// What reading a held answer needs to know.
pub struct AnswerRead<'a> {
    pub rule: &'a ObjectRule,
    pub route: &'a str,
    pub caller: &'a str,
    pub object: Option<&'a ObjectSeen>,
    pub request_id: &'a str,
}

/// Reads a successful answer on a route with `resource:`: a create teaches
/// the index the new object, a read must be the caller's object, a list
/// loses the rows that are not the caller's. `Ok(Some(body))` replaces the
/// answer's body.
pub(crate) async fn read_answer(
    read: &AnswerRead<'_>,
    index: &OwnershipIndex,
    body: &[u8],
) -> Result<Option<Vec<u8>>, Reject> {
    let rule = read.rule;
    let kind = &rule.resource.kind;
    match rule.action {
        ResourceAction::Create => {
            let facts = own::answer_facts(&rule.resource, body)?;
            if facts.owner.as_deref().is_some_and(|o| o != read.caller) {
                suspicious(
                    read,
                    facts.owner.as_deref(),
                    "created object said to be another partner's; answer withheld",
                );
                return Err(problem::RESPONSE_PARTNER_MISMATCH);
            }
            let Some(id) = facts.id else {
                // Withholding the answer would not undo the creation; the
                // object stays unknown, so later requests for it are refused.
                tracing::warn!(target: "portcullis::ownership", request_id = %read.request_id, route = %read.route, "a create answer has no object id where the resource says; owner not recorded");
                return Ok(None);
            };
            match index.learn(kind, &id, read.caller, "create").await {
                Ok(Claimed::New | Claimed::Already) => Ok(None),
                Ok(Claimed::Other(owner)) => {
                    suspicious(
                        read,
                        Some(&owner),
                        "upstream answered a create with another partner's object; answer withheld",
                    );
                    Err(problem::RESPONSE_PARTNER_MISMATCH)
                }
                Err(e) => {
                    tracing::error!(target: "portcullis::ownership", request_id = %read.request_id, route = %read.route, error = %e, "created object's owner not recorded");
                    Ok(None)
                }
            }
        }
        ResourceAction::Read => {
            let Some(seen) = read.object else {
                return Ok(None);
            };
            let facts = own::answer_facts(&rule.resource, body)?;
            match facts.owner {
                Some(owner) if owner == read.caller => {
                    if !seen.known {
                        if let Err(e) = index.learn(kind, &seen.named.id, read.caller, "read").await
                        {
                            tracing::warn!(target: "portcullis::ownership", request_id = %read.request_id, error = %e, "cannot record a read's owner");
                        }
                    }
                    Ok(None)
                }
                Some(owner) => {
                    if crate::keys::store::valid_label(&owner) {
                        let _ = index.learn(kind, &seen.named.id, &owner, "read").await;
                    }
                    if let Some(s) = index.stats() {
                        s.refusals.with_label_values(&[read.route]).inc();
                    }
                    suspicious(
                        read,
                        Some(&owner),
                        "answer about another partner's object withheld",
                    );
                    Err(problem::OBJECT_NOT_FOUND)
                }
                // The answer does not say whose it is: only the index can.
                None if seen.known => Ok(None),
                None => Err(problem::OBJECT_NOT_FOUND),
            }
        }
        ResourceAction::List => {
            let Some(path) = rule.rows.as_deref() else {
                return Ok(None);
            };
            let rows = own::list_rows(&rule.resource, path, body)?;
            let keep: Vec<bool> = rows
                .facts
                .iter()
                .map(|f| f.owner.as_deref() == Some(read.caller))
                .collect();
            let dropped = keep.iter().filter(|k| !**k).count();
            if dropped == 0 {
                return Ok(None);
            }
            match rule.others {
                own::OtherRows::Refuse => {
                    suspicious(
                        read,
                        None,
                        "list answer holds rows of other partners; answer withheld",
                    );
                    Err(problem::RESPONSE_PARTNER_MISMATCH)
                }
                own::OtherRows::Drop => {
                    if let Some(s) = index.stats() {
                        s.rows_dropped
                            .with_label_values(&[read.route])
                            .inc_by(dropped as u64);
                    }
                    Ok(Some(own::keep_rows(body, &rows, &keep)))
                }
            }
        }
        ResourceAction::Change | ResourceAction::Delete => Ok(None),
    }
}

fn suspicious(read: &AnswerRead<'_>, owner: Option<&str>, message: &'static str) {
    tracing::warn!(
        target: "portcullis::suspicious",
        request_id = %read.request_id,
        partner = %read.caller,
        owner = owner.unwrap_or("-"),
        route = %read.route,
        kind = %read.rule.resource.kind,
        id = read.object.map_or("-", |o| o.named.id.as_str()),
        "{message}"
    );
}
