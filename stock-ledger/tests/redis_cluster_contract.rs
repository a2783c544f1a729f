//! The ledger contract against a real 3-node Redis Cluster on
//! 127.0.0.1:7000-7002 (`scripts/services.sh up` starts it). Campaign keys
//! share a hash tag, so every script runs on the one node owning its slot;
//! the unique campaign ids spread the tests over all three nodes.
//! No skipping: without the cluster this test fails.

mod common;

async fn ledger() -> stock_ledger::RedisLedger<stock_ledger::RedisClusterConn> {
    common::cluster(1).await
}

stock_ledger::ledger_contract_tests!(|| ledger());

/// The keys of two campaigns land on different nodes, and each campaign's
/// keys on one slot (the script would be refused with CROSSSLOT otherwise).
#[tokio::test]
async fn campaigns_spread_over_slots() {
    use engine::ports::StockLedger;
    let l = ledger().await;
    let mut slots = std::collections::HashSet::new();
    for i in 0..16 {
        let c = stock_ledger::contract::unique_campaign(&format!("slot{i}"));
        l.load(&c, 1, None)
            .await
            .expect("load on whichever node owns the slot");
        slots.insert(key_slot(&format!("{{{c}}}")) / 5461);
    }
    assert!(
        slots.len() >= 2,
        "16 campaigns all landed on one node: {slots:?}"
    );
}

/// CRC16/XMODEM of the hash tag, as Redis Cluster computes slots.
fn key_slot(tag: &str) -> u16 {
    let inner = tag.trim_start_matches('{').trim_end_matches('}');
    let mut crc: u16 = 0;
    for b in inner.bytes() {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}
