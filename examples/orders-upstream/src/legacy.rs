//! The "legacy" orders API: `/orders` and `/orders/{id}`, shaped the way
//! backends that were never built for partners are. Ids are opaque
//! (`ord_` + 12 hex), no URL names a partner, the list answers every
//! partner's orders, and reads, changes and deletes by id never ask whose
//! order it is. The only partner it knows is the one a gateway forwards in
//! `x-partner-id` when an order is created.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// Partners whose orders exist from the start, so a demo has something to
/// list and something to attack.
pub const SEEDED_PARTNERS: [&str; 3] = ["acme", "globex", "initech"];
const SEEDED_PER_PARTNER: usize = 3;
const UNIT_COST_CENTS: i64 = 1299;
const SKUS: [&str; 4] = ["WIDGET-RED-01", "GADGET-XL", "BOLT-M8-50", "CABLE-USB-C-2M"];

#[derive(Clone, Debug, Serialize)]
pub struct LegacyOrder {
    pub id: String,
    pub partner: String,
    pub sku: String,
    pub quantity: i64,
    pub status: String,
    pub internal_cost_cents: i64,
}

#[derive(Debug, Deserialize)]
pub struct NewLegacyOrder {
    pub sku: String,
    pub quantity: i64,
}

/// A change: only the fields given are replaced. Unknown fields are ignored,
/// as careless backends do (including `partner`, which would otherwise be
/// the easy way to steal an order).
#[derive(Debug, Deserialize)]
pub struct OrderChange {
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub quantity: Option<i64>,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug)]
pub struct LegacyStore {
    orders: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    by_id: BTreeMap<String, LegacyOrder>,
    /// Creation order, so lists are stable and mix partners the way a table
    /// sorted by creation time does.
    sequence: Vec<String>,
    created: u64,
}

impl Default for LegacyStore {
    fn default() -> Self {
        let mut inner = Inner {
            by_id: BTreeMap::new(),
            sequence: Vec::new(),
            created: 0,
        };
        // Interleaved, so a list always holds several partners' rows side by side.
        for i in 0..SEEDED_PER_PARTNER {
            for partner in SEEDED_PARTNERS {
                let sku = SKUS[(i + partner.len()) % SKUS.len()];
                inner.insert(partner, sku, 1 + i as i64);
            }
        }
        Self {
            orders: Mutex::new(inner),
        }
    }
}

impl Inner {
    fn insert(&mut self, partner: &str, sku: &str, quantity: i64) -> LegacyOrder {
        self.created += 1;
        let order = LegacyOrder {
            id: opaque_id(self.created),
            partner: partner.to_owned(),
            sku: sku.to_owned(),
            quantity,
            status: "open".to_owned(),
            internal_cost_cents: quantity.saturating_mul(UNIT_COST_CENTS),
        };
        self.sequence.push(order.id.clone());
        self.by_id.insert(order.id.clone(), order.clone());
        order
    }
}

impl LegacyStore {
    /// Every partner's orders, optionally only those with `status`.
    pub fn list(&self, status: Option<&str>) -> Vec<LegacyOrder> {
        let inner = self.lock();
        inner
            .sequence
            .iter()
            .filter_map(|id| inner.by_id.get(id))
            .filter(|o| status.is_none_or(|s| o.status == s))
            .cloned()
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<LegacyOrder> {
        self.lock().by_id.get(id).cloned()
    }

    pub fn create(&self, partner: &str, new: NewLegacyOrder) -> LegacyOrder {
        self.lock().insert(partner, &new.sku, new.quantity)
    }

    pub fn change(&self, id: &str, change: OrderChange) -> Option<LegacyOrder> {
        let mut inner = self.lock();
        let order = inner.by_id.get_mut(id)?;
        if let Some(sku) = change.sku {
            order.sku = sku;
        }
        if let Some(quantity) = change.quantity {
            order.quantity = quantity;
            order.internal_cost_cents = quantity.saturating_mul(UNIT_COST_CENTS);
        }
        if let Some(status) = change.status {
            order.status = status;
        }
        Some(order.clone())
    }

    pub fn delete(&self, id: &str) -> bool {
        let mut inner = self.lock();
        let removed = inner.by_id.remove(id).is_some();
        if removed {
            inner.sequence.retain(|s| s != id);
        }
        removed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update is a single map operation, so a poisoned lock holds consistent data.
        self.orders.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The id of `partner`'s `n`-th seeded order: seeding interleaves partners.
pub fn seeded_id(partner: &str, n: usize) -> Option<String> {
    let p = SEEDED_PARTNERS.iter().position(|s| *s == partner)?;
    (n < SEEDED_PER_PARTNER).then(|| opaque_id((n * SEEDED_PARTNERS.len() + p + 1) as u64))
}

/// `ord_` and 12 hex digits: stable for the n-th order of any run, and not
/// guessable from the partner's name the way `acme-1001` is.
fn opaque_id(n: u64) -> String {
    // An odd multiplier is a bijection on u64, so ids never collide.
    let scrambled = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16;
    format!("ord_{scrambled:012x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_mixes_every_partner_and_ids_are_opaque() {
        let store = LegacyStore::default();
        let all = store.list(None);
        assert_eq!(all.len(), SEEDED_PARTNERS.len() * SEEDED_PER_PARTNER);
        assert_eq!(all[0].partner, "acme");
        assert_eq!(all[1].partner, "globex");
        assert_eq!(seeded_id("globex", 0).as_deref(), Some(all[1].id.as_str()));
        assert_eq!(seeded_id("acme", 2).as_deref(), Some(all[6].id.as_str()));
        assert_eq!(seeded_id("umbrella", 0), None);
        for o in &all {
            assert!(o.id.starts_with("ord_") && o.id.len() == 16, "{}", o.id);
            assert!(!o.id.contains(&o.partner));
        }
        let again = LegacyStore::default().list(None);
        assert_eq!(
            all.iter().map(|o| &o.id).collect::<Vec<_>>(),
            again.iter().map(|o| &o.id).collect::<Vec<_>>()
        );
    }

    #[test]
    fn by_id_operations_never_ask_whose_order_it_is() {
        let store = LegacyStore::default();
        let globex = store.list(None)[1].clone();
        let changed = store
            .change(
                &globex.id,
                OrderChange {
                    sku: None,
                    quantity: Some(7),
                    status: Some("cancelled".into()),
                },
            )
            .unwrap();
        assert_eq!(
            (changed.quantity, changed.status.as_str()),
            (7, "cancelled")
        );
        assert_eq!(store.list(Some("cancelled")).len(), 1);
        assert!(store.delete(&globex.id));
        assert!(store.get(&globex.id).is_none());
        assert!(!store.delete(&globex.id));
        let created = store.create(
            "acme",
            NewLegacyOrder {
                sku: "X".into(),
                quantity: 2,
            },
        );
        assert_eq!(store.get(&created.id).unwrap().partner, "acme");
    }
}
