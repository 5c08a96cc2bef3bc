use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// An order as the backend stores and returns it. The last three fields are internal
/// bookkeeping that the backend carelessly leaks to partners.
#[derive(Clone, Debug, Serialize)]
pub struct Order {
    pub id: String,
    pub partner: String,
    pub sku: String,
    pub quantity: i64,
    pub status: &'static str,
    pub internal_cost_cents: i64,
    pub db_shard: String,
    pub created_by: &'static str,
}

/// The body of `POST /partners/{partner}/orders`. Like many legacy backends this one only
/// checks types: unknown fields are ignored and the ranges in openapi.yaml are not enforced,
/// which is what the gateway in front of it is for.
#[derive(Debug, Deserialize)]
pub struct NewOrder {
    pub sku: String,
    pub quantity: i64,
}

const SEED_SKUS: [&str; 5] = [
    "WIDGET-RED-01",
    "GADGET-XL",
    "BOLT-M8-50",
    "CABLE-USB-C-2M",
    "BRACKET-200",
];
const CREATED_BY: &str = "svc-orders@10.0.4.17";
const FIRST_ORDER_NUMBER: usize = 1001;
const UNIT_COST_CENTS: i64 = 1299;

/// Orders per partner. Partners are created on first use with seeded orders, so any
/// partner id works and the same id always starts with the same orders.
#[derive(Debug, Default)]
pub struct Store {
    partners: Mutex<HashMap<String, Vec<Order>>>,
}

impl Store {
    pub fn list(&self, partner: &str) -> Vec<Order> {
        self.with_partner(partner, |orders| orders.clone())
    }

    pub fn get(&self, partner: &str, id: &str) -> Option<Order> {
        self.with_partner(partner, |orders| {
            orders.iter().find(|order| order.id == id).cloned()
        })
    }

    pub fn create(&self, partner: &str, new: NewOrder) -> Order {
        self.with_partner(partner, |orders| {
            let order = Order {
                id: order_id(partner, orders.len()),
                partner: partner.to_owned(),
                sku: new.sku,
                quantity: new.quantity,
                status: "open",
                internal_cost_cents: new.quantity.saturating_mul(UNIT_COST_CENTS),
                db_shard: shard(partner),
                created_by: CREATED_BY,
            };
            orders.push(order.clone());
            order
        })
    }

    fn with_partner<T>(&self, partner: &str, f: impl FnOnce(&mut Vec<Order>) -> T) -> T {
        // Nothing holding the lock can leave the map half-updated, so a poisoned lock is safe to reuse.
        let mut partners = self.partners.lock().unwrap_or_else(PoisonError::into_inner);
        let orders = partners
            .entry(partner.to_owned())
            .or_insert_with(|| seed(partner));
        f(orders)
    }
}

fn seed(partner: &str) -> Vec<Order> {
    let count = 2 + (fnv1a(partner) % 2) as usize;
    (0..count)
        .map(|i| {
            let id = order_id(partner, i);
            let h = fnv1a(&id);
            let quantity = 1 + (h % 20) as i64;
            Order {
                sku: SEED_SKUS[(h >> 8) as usize % SEED_SKUS.len()].to_owned(),
                id,
                partner: partner.to_owned(),
                quantity,
                status: "open",
                internal_cost_cents: quantity * UNIT_COST_CENTS,
                db_shard: shard(partner),
                created_by: CREATED_BY,
            }
        })
        .collect()
}

fn order_id(partner: &str, index: usize) -> String {
    format!("{partner}-{}", FIRST_ORDER_NUMBER + index)
}

fn shard(partner: &str) -> String {
    format!("shard-{}", fnv1a(partner) % 8)
}

// Written out rather than using std's hasher, whose output is not promised to stay
// the same across Rust releases; seeded data must be stable for tests and docs.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeding_is_deterministic_and_partner_scoped() {
        let a = Store::default();
        let b = Store::default();
        let acme = a.list("acme");
        assert!((2..=3).contains(&acme.len()));
        assert_eq!(acme[0].id, "acme-1001");
        assert_eq!(acme[1].id, "acme-1002");
        assert!(acme.iter().all(|o| o.partner == "acme"));
        let again: Vec<_> = b.list("acme").into_iter().map(|o| (o.id, o.sku)).collect();
        let first: Vec<_> = acme.into_iter().map(|o| (o.id, o.sku)).collect();
        assert_eq!(first, again);
        assert!(a.get("globex", "acme-1001").is_none());
    }

    #[test]
    fn created_orders_continue_the_numbering() {
        let store = Store::default();
        let seeded = store.list("globex").len();
        let order = store.create(
            "globex",
            NewOrder {
                sku: "BOLT-7".into(),
                quantity: 3,
            },
        );
        assert_eq!(order.id, format!("globex-{}", 1001 + seeded));
        assert_eq!(store.get("globex", &order.id).map(|o| o.quantity), Some(3));
    }
}
