//! The behaviour every `KeyStore` must have; each implementation runs it.

use super::pepper::Pepper;
use super::store::{new_record, new_record_of, KeyRecord, KeyStore, Kind, StoreError};

async fn find(store: &dyn KeyStore, record: &KeyRecord) -> Option<KeyRecord> {
    store
        .lookup(&record.key_hash().unwrap())
        .await
        .unwrap()
        .record
}

pub async fn run(store: &dyn KeyStore) {
    let pepper = Pepper::from_bytes([7; 32]);
    let (_k1, primary) = new_record(&pepper, "acme", "primary", None).unwrap();
    let (_k2, spare) = new_record(&pepper, "acme", "spare", Some(4_102_444_800)).unwrap();
    let (_k3, other) = new_record(&pepper, "globex", "primary", None).unwrap();
    store.insert(primary.clone()).await.unwrap();
    store.insert(spare.clone()).await.unwrap();
    store.insert(other.clone()).await.unwrap();

    // Lookup by hash finds exactly the record, and nothing else matches.
    assert_eq!(find(store, &primary).await, Some(primary.clone()));
    assert_eq!(find(store, &spare).await, Some(spare.clone()));
    let (_, never_stored) = new_record(&pepper, "acme", "ghost", None).unwrap();
    assert_eq!(find(store, &never_stored).await, None);

    // A partner cannot hold two keys of one name.
    let (_, dup) = new_record(&pepper, "acme", "primary", None).unwrap();
    assert!(matches!(
        store.insert(dup).await,
        Err(StoreError::Conflict(_))
    ));

    // Replacing one key leaves the partner's other keys alone, and the
    // change shows in the epoch that lookups report.
    let (_, rotated) = new_record(&pepper, "acme", "primary", None).unwrap();
    // A conditional replacement names the key it expects to replace.
    let (_, stale) = new_record(&pepper, "acme", "primary", None).unwrap();
    let (_, racing) = new_record(&pepper, "acme", "primary", None).unwrap();
    assert!(matches!(
        store
            .replace(racing.clone(), Some(&stale.key_hash().unwrap()))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(find(store, &primary).await, Some(primary.clone()));
    assert_eq!(find(store, &racing).await, None);
    let (old, epoch_after_rotation) = store
        .replace(rotated.clone(), Some(&primary.key_hash().unwrap()))
        .await
        .unwrap();
    assert_eq!(old, primary);
    assert_eq!(find(store, &primary).await, None);
    assert_eq!(find(store, &rotated).await, Some(rotated.clone()));
    assert_eq!(find(store, &spare).await, Some(spare.clone()));
    let seen = store
        .lookup(&rotated.key_hash().unwrap())
        .await
        .unwrap()
        .epoch;
    assert!(seen >= epoch_after_rotation);

    // Listing filters by partner and never loses a key.
    let mut acme: Vec<String> = store
        .list(Some("acme"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    acme.sort();
    assert_eq!(acme, vec!["primary", "spare"]);
    assert_eq!(store.list(None).await.unwrap().len(), 3);

    // Removing is by partner and name; a second removal finds nothing.
    // A conditional removal names the key it expects to remove.
    assert!(matches!(
        store
            .remove("acme", "spare", Some(&primary.key_hash().unwrap()))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(find(store, &spare).await, Some(spare.clone()));
    let (removed, epoch_after_removal) = store
        .remove("acme", "spare", Some(&spare.key_hash().unwrap()))
        .await
        .unwrap();
    assert_eq!(removed, spare);
    assert!(epoch_after_removal >= epoch_after_rotation);
    assert_eq!(find(store, &spare).await, None);
    assert_eq!(
        store.remove("acme", "spare", None).await,
        Err(StoreError::NotFound)
    );
    let (_, missing) = new_record(&pepper, "initech", "primary", None).unwrap();
    assert_eq!(
        store.replace(missing, None).await,
        Err(StoreError::NotFound)
    );

    // The self-rotation mark is kept by the store.
    let (_, mut marked) = new_record(&pepper, "globex", "primary", None).unwrap();
    marked.self_rotated = true;
    store.replace(marked.clone(), None).await.unwrap();
    assert_eq!(find(store, &marked).await, Some(marked.clone()));
    let (_, unmarked) = new_record(&pepper, "globex", "primary", None).unwrap();
    store.replace(unmarked.clone(), None).await.unwrap();
    assert!(!find(store, &unmarked).await.unwrap().self_rotated);

    // A management credential has its own slots: it may share a data key's
    // name, and is found, listed and removed as what it is.
    let (_, manager) = new_record_of(Kind::Management, &pepper, "acme", "primary", None).unwrap();
    assert_eq!(manager.slot(), "mgmt.primary");
    store.insert(manager.clone()).await.unwrap();
    assert_eq!(find(store, &manager).await, Some(manager.clone()));
    assert_eq!(find(store, &rotated).await, Some(rotated.clone()));
    let kinds: Vec<Kind> = store
        .list(Some("acme"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert!(kinds.contains(&Kind::Management) && kinds.contains(&Kind::Data));
    let (_, next) = new_record_of(Kind::Management, &pepper, "acme", "primary", None).unwrap();
    let (old, _) = store.replace(next.clone(), None).await.unwrap();
    assert_eq!(old, manager);
    assert_eq!(find(store, &rotated).await, Some(rotated.clone()));
    let (gone, _) = store.remove("acme", "mgmt.primary", None).await.unwrap();
    assert_eq!(gone, next);
    assert_eq!(find(store, &rotated).await, Some(rotated.clone()));

    // Usage only ever moves forward, and only for keys still stored.
    store
        .record_use(&[
            (rotated.hash.clone(), 1_000_020),
            (never_stored.hash.clone(), 1_000_020),
        ])
        .await
        .unwrap();
    store
        .record_use(&[(rotated.hash.clone(), 1_000_000)])
        .await
        .unwrap();
    assert_eq!(
        find(store, &rotated).await.unwrap().last_used_at,
        Some(1_000_020)
    );
    assert_eq!(find(store, &never_stored).await, None);
    let mut rotated = rotated;
    rotated.last_used_at = Some(1_000_020);

    // Suspension covers every key of the partner, now and later, and no one else's.
    let suspended_at = store.set_suspended("acme", true).await.unwrap();
    assert!(suspended_at >= epoch_after_removal);
    let suspended = |r: &KeyRecord| {
        let hash = r.key_hash().unwrap();
        async move { store.lookup(&hash).await.unwrap().partner_suspended }
    };
    assert!(suspended(&rotated).await);
    assert!(!suspended(&unmarked).await);
    let (_, later) = new_record(&pepper, "acme", "later", None).unwrap();
    store.insert(later.clone()).await.unwrap();
    assert!(suspended(&later).await);
    assert_eq!(store.suspended_partners().await.unwrap(), vec!["acme"]);
    let resumed_at = store.set_suspended("acme", false).await.unwrap();
    assert!(resumed_at >= suspended_at);
    assert!(!suspended(&rotated).await);
    assert!(store.suspended_partners().await.unwrap().is_empty());
}
