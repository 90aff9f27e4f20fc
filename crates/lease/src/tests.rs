use super::*;

fn lessor() -> Lessor {
    Lessor::new(LessorConfig {
        min_ttl_secs: 2,
        checkpointing: true,
        checkpoint_interval: Duration::from_secs(60),
        expired_retry_interval: Duration::from_secs(3),
    })
}

#[test]
fn min_ttl_follows_etcd() {
    // 1000 ms election, 100 ms heartbeat: 15 ticks of 100 ms = 1.5 s → 2 s.
    assert_eq!(
        LessorConfig::min_ttl_for(Duration::from_millis(1000), Duration::from_millis(100)),
        2
    );
    assert_eq!(
        LessorConfig::min_ttl_for(Duration::from_millis(5000), Duration::from_millis(500)),
        8
    );
}

#[test]
fn grant_checks_as_etcd_does() {
    let l = lessor();
    let now = Instant::now();
    assert_eq!(l.grant(0, 10, now), Err(LeaseError::NotFound));
    assert_eq!(
        l.grant(1, MAX_LEASE_TTL + 1, now),
        Err(LeaseError::TtlTooLarge)
    );
    let r = l.grant(1, 1, now).expect("grant");
    assert_eq!(
        r,
        LeaseRecord {
            id: 1,
            ttl: 2,
            remaining_ttl: 0
        }
    );
    assert_eq!(l.grant(1, 10, now), Err(LeaseError::Exists));
    l.grant(2, MAX_LEASE_TTL, now).expect("the largest TTL");
    // Not primary: no expiry.
    assert_eq!(l.lookup(1, now).expect("lease").remaining, None);
    assert_eq!(l.renew(1, now), Err(LeaseError::NotPrimary));
}

#[test]
fn attach_detach_and_revoke_keys() {
    let l = lessor();
    let now = Instant::now();
    l.grant(1, 10, now).expect("grant");
    l.grant(2, 10, now).expect("grant");
    l.attach(1, b"b").expect("attach");
    l.attach(1, b"a").expect("attach");
    assert_eq!(l.attach(3, b"c"), Err(LeaseError::NotFound));
    assert_eq!(l.keys(1).expect("keys"), vec![b"a".to_vec(), b"b".to_vec()]);
    // Moving a key to another lease detaches it from the first.
    l.attach(2, b"a").expect("attach");
    assert_eq!(l.keys(1).expect("keys"), vec![b"b".to_vec()]);
    assert_eq!(l.lease_of(b"a"), 2);
    assert_eq!(l.detach(b"a"), Some(2));
    assert_eq!(l.detach(b"a"), None);
    assert_eq!(l.lease_of(b"a"), NO_LEASE);
    l.remove(1).expect("remove");
    assert_eq!(l.lease_of(b"b"), NO_LEASE);
    assert_eq!(l.keys(1), Err(LeaseError::NotFound));
    assert_eq!(l.remove(1), Err(LeaseError::NotFound));
}

#[test]
fn primary_expires_renews_and_retries() {
    let l = lessor();
    let t0 = Instant::now();
    l.grant(1, 5, t0).expect("grant");
    l.grant(2, 10, t0).expect("grant");
    l.promote(Duration::from_secs(1), 1, t0);
    assert!(l.is_primary());
    // Expiry: TTL + the promotion's extension.
    assert!(l.expired(t0 + Duration::from_millis(5900), 10).is_empty());
    assert_eq!(l.expired(t0 + Duration::from_secs(6), 10), vec![1]);
    // Asked again only after the retry interval.
    assert!(l.expired(t0 + Duration::from_secs(7), 10).is_empty());
    assert_eq!(l.expired(t0 + Duration::from_secs(9), 10), vec![1]);
    // An expired lease cannot be renewed.
    assert_eq!(
        l.renew(1, t0 + Duration::from_secs(9)),
        Err(LeaseError::NotFound)
    );
    // Renewing lease 2 moves its expiry.
    let t = t0 + Duration::from_secs(10);
    assert_eq!(l.renew(2, t), Ok((10, false)));
    assert!(l.expired(t0 + Duration::from_secs(19), 10).contains(&1));
    assert!(!l.expired(t + Duration::from_millis(9900), 10).contains(&2));
    assert!(l.expired(t + Duration::from_secs(10), 10).contains(&2));
    let view = l.lookup(2, t + Duration::from_secs(4)).expect("lease");
    assert_eq!(view.remaining, Some(Duration::from_secs(6)));
}

#[test]
fn demotion_stops_expiry_and_late_promotions_are_ignored() {
    let l = lessor();
    let t0 = Instant::now();
    l.grant(1, 2, t0).expect("grant");
    l.promote(Duration::ZERO, 3, t0);
    l.demote(3);
    assert!(!l.is_primary());
    assert!(l.expired(t0 + Duration::from_secs(100), 10).is_empty());
    // The applier's promotion for term 3 arriving after the demotion.
    l.promote(Duration::ZERO, 3, t0);
    assert!(!l.is_primary());
    l.promote(Duration::ZERO, 4, t0);
    assert!(l.is_primary());
}

#[test]
fn checkpoints_carry_the_remaining_ttl_to_the_next_leader() {
    let l = lessor();
    let t0 = Instant::now();
    l.grant(1, 300, t0).expect("grant");
    l.grant(2, 30, t0).expect("grant (too short to checkpoint)");
    l.promote(Duration::ZERO, 1, t0);
    assert!(l
        .due_checkpoints(t0 + Duration::from_secs(59), 10)
        .is_empty());
    let due = l.due_checkpoints(t0 + Duration::from_secs(60), 10);
    assert_eq!(due, vec![(1, 240)]);
    // Applied on every member; a new leader continues from it.
    let record = l
        .checkpoint(1, 240, t0 + Duration::from_secs(60))
        .expect("lease");
    assert_eq!(record.remaining_ttl, 240);
    l.demote(1);
    let t1 = t0 + Duration::from_secs(100);
    l.promote(Duration::from_secs(1), 2, t1);
    let view = l.lookup(1, t1).expect("lease");
    assert_eq!(view.remaining, Some(Duration::from_secs(241)));
    // A keep-alive restores the full TTL and asks to clear the checkpoint.
    assert_eq!(l.renew(1, t1), Ok((300, true)));
    assert_eq!(l.renew(1, t1), Ok((300, false)));
}

#[test]
fn promotion_spreads_mass_expiry() {
    let l = lessor();
    let t0 = Instant::now();
    let n = 3000i64;
    for id in 1..=n {
        l.grant(id, 10, t0).expect("grant");
    }
    l.promote(Duration::ZERO, 1, t0);
    // Without spreading all 3000 would expire at 10 s.
    let first: std::collections::HashSet<i64> = l
        .expired(t0 + Duration::from_secs(10), usize::MAX)
        .into_iter()
        .collect();
    assert!(
        first.len() <= 800,
        "{} leases expire in the first second",
        first.len()
    );
    // Later ones (and the first ones again, not yet revoked) come after.
    let mut all = first.clone();
    all.extend(l.expired(t0 + Duration::from_secs(20), usize::MAX));
    assert_eq!(all.len(), n as usize);
}

#[test]
fn recover_rebuilds_leases_and_attachments() {
    let l = lessor();
    let now = Instant::now();
    l.grant(9, 10, now).expect("grant");
    l.recover(
        &[
            LeaseRecord {
                id: 1,
                ttl: 1,
                remaining_ttl: 0,
            },
            LeaseRecord {
                id: 2,
                ttl: 60,
                remaining_ttl: 30,
            },
        ],
        &[
            (b"k1".to_vec(), 1),
            (b"k2".to_vec(), 2),
            (b"orphan".to_vec(), 7),
        ],
    );
    assert!(!l.exists(9));
    assert_eq!(l.lookup(1, now).expect("lease").ttl, 2);
    assert_eq!(l.keys(2).expect("keys"), vec![b"k2".to_vec()]);
    assert_eq!(l.lease_of(b"orphan"), NO_LEASE);
    assert_eq!(l.leases(now), vec![1, 2]);
}
