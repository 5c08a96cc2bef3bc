//! The behaviour every `OwnershipStore` must have; each engine runs it.

use super::store::{Claimed, IndexError, Ownership, OwnershipStore};

fn record(kind: &str, id: &str, partner: &str) -> Ownership {
    Ownership {
        kind: kind.into(),
        id: id.into(),
        partner: partner.into(),
    }
}

pub async fn run(store: &dyn OwnershipStore) {
    assert_eq!(store.owner("order", "o-1").await.unwrap(), None);
    assert_eq!(
        store.claim("order", "o-1", "acme").await.unwrap(),
        Claimed::New
    );
    assert_eq!(
        store.claim("order", "o-1", "acme").await.unwrap(),
        Claimed::Already
    );
    // Learning never moves an object: a second claimant is told the owner.
    assert_eq!(
        store.claim("order", "o-1", "globex").await.unwrap(),
        Claimed::Other("acme".into())
    );
    assert_eq!(
        store.owner("order", "o-1").await.unwrap().as_deref(),
        Some("acme")
    );
    // Kinds are separate namespaces.
    assert_eq!(store.owner("invoice", "o-1").await.unwrap(), None);

    // A transfer moves it and says from whom.
    assert_eq!(
        store.transfer("order", "o-1", "globex").await.unwrap(),
        Some("acme".into())
    );
    assert_eq!(
        store.owner("order", "o-1").await.unwrap().as_deref(),
        Some("globex")
    );

    // Import is many transfers; export filters by kind and partner.
    let n = store
        .import(vec![
            record("order", "o-2", "acme"),
            record("order", "o-3", "acme"),
            record("invoice", "i-1", "acme"),
        ])
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(store.count().await.unwrap(), 4);
    let acme_orders = store.export(Some("order"), Some("acme")).await.unwrap();
    assert_eq!(
        acme_orders,
        vec![
            record("order", "o-2", "acme"),
            record("order", "o-3", "acme")
        ]
    );
    assert_eq!(store.export(None, None).await.unwrap().len(), 4);

    // Malformed records are refused whole: nothing of the batch lands.
    for bad in [
        record("order", "a/b", "acme"),
        record("order", "..", "acme"),
        record("order", "a%2f", "acme"),
        record("order", "", "acme"),
        record("Order", "x", "acme"),
        record("order", "x", "ACME"),
    ] {
        let err = store
            .import(vec![record("order", "fine", "acme"), bad.clone()])
            .await;
        assert!(matches!(err, Err(IndexError::Invalid(_))), "{bad:?}");
    }
    assert_eq!(store.owner("order", "fine").await.unwrap(), None);

    assert_eq!(
        store.remove("order", "o-3").await.unwrap(),
        "acme".to_string()
    );
    assert_eq!(
        store.remove("order", "o-3").await,
        Err(IndexError::NotFound)
    );
    assert_eq!(store.count().await.unwrap(), 3);
}
