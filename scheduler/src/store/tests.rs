//! The store's tests, on each engine.

use super::schema::group_time_key;
use super::*;
use crate::config::CatchUp;
use crate::kv::{Kv, TreeId};
use crate::record::{to_ms, DelayId, Record};

/// Opens (or creates) a store in `dir` with `kind` and answers its database.
fn open(dir: &std::path::Path, kind: EngineKind) -> Arc<Db> {
    Store::open_with(dir, 16 << 20, kind).unwrap().db().unwrap()
}

fn rec(dtype: i64, ts: i64, times: i64, interval: i64) -> Record {
    Record {
        topic: "t".into(),
        tags: None,
        properties: vec![],
        body: b"b".to_vec(),
        id: DelayId {
            timestamp: ts,
            dtype,
            expire: ts + 172_800,
            times,
            timed: 0,
            interval,
            seq: 0,
            uuid: "14f22520-ad72-11e7-91be-6ee54da579e3".into(),
        },
        next_index: 0,
        next_due_ms: to_ms(ts),
        attempts: 0,
        first_failure_ms: 0,
        created_ms: 0,
        owner: String::new(),
        caught_up: 0,
    }
}

const CU: CatchUp = CatchUp {
    skip: true,
    late_tolerance_ms: 1000,
    max_catch_up: 100,
};

/// Runs the tests inside once per engine (`KIND`).
macro_rules! on_each_engine {
    ($($body:tt)*) => {
        mod sled_engine {
            use super::*;
            const KIND: EngineKind = EngineKind::Sled;
            $($body)*
        }
        mod redb_engine {
            use super::*;
            const KIND: EngineKind = EngineKind::Redb;
            $($body)*
        }
    };
}

fn closed_store_with_one_add(dir: &std::path::Path, kind: EngineKind) -> (Record, String) {
    let r = rec(2, 1_700_000_000, 0, 0);
    let id = r.occurrence_id(0);
    let s = open(dir, kind);
    s.apply(&Mutation::Add {
        id: id.clone(),
        record: Box::new(r.clone()),
    })
    .unwrap();
    s.flush().unwrap();
    (r, id)
}

#[test]
fn an_unfinished_snapshot_does_not_make_the_store_unopenable() {
    let dir = tempfile::tempdir().unwrap();
    let (r, id) = closed_store_with_one_add(dir.path(), EngineKind::Sled);
    // What a snapshot write on a full disk leaves behind (issue #7 part 6).
    let leftover = dir.path().join("snap.FFFFFFFFFFFFFFFF.generating");
    std::fs::write(&leftover, b"").unwrap();
    // The closed store's flusher thread may hold sled's file lock a moment longer: wait for it
    // (a lock error is not the refusal this test is about).
    let mut raw = sled::Config::new().path(dir.path()).open();
    for _ in 0..100 {
        match &raw {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(50));
                raw = sled::Config::new().path(dir.path()).open();
            }
            _ => break,
        }
    }
    assert!(
        matches!(raw, Err(sled::Error::Corruption { .. })),
        "sled itself refuses the directory: {:?}",
        raw.err()
    );
    let s = Store::open_with(dir.path(), 16 << 20, EngineKind::Redb).unwrap();
    assert_eq!(
        s.engine(),
        EngineKind::Sled,
        "an existing store keeps its engine"
    );
    assert_eq!(s.db().unwrap().record(&id).unwrap(), Some(r));
    assert!(!leftover.exists());
}

#[test]
fn a_store_written_by_fjall_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keyspaces")).unwrap();
    let err = Store::open_with(dir.path(), 16 << 20, EngineKind::Redb)
        .err()
        .expect("refused");
    assert!(matches!(err, StoreError::Fjall(_)), "{err}");
    assert!(err.to_string().contains("fjall"), "{err}");
    assert!(
        !dir.path().join("store.redb").exists(),
        "nothing created beside it"
    );
}

on_each_engine! {
    #[test]
    fn add_is_idempotent_and_cancel_is_topic_bound() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), KIND);
        let r = rec(2, 1_700_000_000, 0, 0);
        let id = r.occurrence_id(0);
        let add = Mutation::Add {
            id: id.clone(),
            record: Box::new(r.clone()),
        };
        assert_eq!(
            s.apply(&add).unwrap(),
            Applied::Added {
                due_ms: 1_700_000_000_000
            }
        );
        assert_eq!(s.apply(&add).unwrap(), Applied::AddExisting);
        assert_eq!(
            s.due_range(0, i64::MAX, 10).unwrap(),
            vec![(1_700_000_000_000, id.clone())]
        );
        let cancel = |topic: &str| Mutation::Cancel {
            id: id.clone(),
            topic: topic.into(),
            at_ms: 5,
            principal: None,
        };
        assert_eq!(
            s.apply(&cancel("other")).unwrap(),
            Applied::Cancel(CancelResult::TopicMismatch)
        );
        assert_eq!(
            s.apply(&cancel("t")).unwrap(),
            Applied::Cancel(CancelResult::Cancelled)
        );
        assert_eq!(
            s.apply(&cancel("t")).unwrap(),
            Applied::Cancel(CancelResult::AfterFinish)
        );
        assert!(s.due_range(0, i64::MAX, 10).unwrap().is_empty());
        assert_eq!(
            s.apply(&add).unwrap(),
            Applied::AddExisting,
            "a late add stays cancelled"
        );
        let unknown = Mutation::Cancel {
            id: "x".into(),
            topic: "t".into(),
            at_ms: 6,
            principal: None,
        };
        assert_eq!(
            s.apply(&unknown).unwrap(),
            Applied::Cancel(CancelResult::Unknown)
        );
        assert_eq!(s.done("x").unwrap().unwrap().state, Final::CancelledUnknown);
    }

    #[test]
    fn journaled_mutations_store_their_offset_in_the_same_group() {
        let dir = tempfile::tempdir().unwrap();
        let r = rec(2, 1_700_000_000, 0, 0);
        let id = r.occurrence_id(0);
        {
            let s = open(dir.path(), KIND);
            assert_eq!(s.journal_offset().unwrap(), None);
            let add = Mutation::Journaled {
                offset: 41,
                inner: Box::new(Mutation::Add {
                    id: id.clone(),
                    record: Box::new(r.clone()),
                }),
            };
            let cancel = Mutation::Journaled {
                offset: 42,
                inner: Box::new(Mutation::Cancel {
                    id: id.clone(),
                    topic: r.topic.clone(),
                    at_ms: 1,
                    principal: None,
                }),
            };
            let out = s.apply_group(&[&add, &cancel]).unwrap();
            assert_eq!(
                out,
                vec![
                    Applied::Added {
                        due_ms: r.next_due_ms
                    },
                    Applied::Cancel(CancelResult::Cancelled)
                ]
            );
            s.flush().unwrap();
        }
        let s = open(dir.path(), KIND);
        assert_eq!(s.journal_offset().unwrap(), Some(42));
        assert!(s.record(&id).unwrap().is_none(), "the cancel was applied");
        assert_eq!(s.count_pending().unwrap(), 0);
        // A tombstone forgets a pending record without firing it, and is idempotent.
        let r2 = rec(2, 1_700_000_100, 0, 0);
        let id2 = r2.occurrence_id(0);
        s.apply(&Mutation::Add {
            id: id2.clone(),
            record: Box::new(r2),
        })
        .unwrap();
        let forget = Mutation::Forget {
            id: id2.clone(),
            at_ms: 5,
        };
        assert_eq!(s.apply(&forget).unwrap(), Applied::Finished(Final::Fired));
        assert_eq!(s.apply(&forget).unwrap(), Applied::Stale);
        assert!(s.record(&id2).unwrap().is_none());
        assert!(s.first_due().unwrap().is_none(), "no due entry left");
        assert_eq!(s.count_pending().unwrap(), 0);
    }

    #[test]
    fn completions_advance_loops_retry_and_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), KIND);
        let r = rec(3, 1_700_000_000, 3, 10);
        let id = r.occurrence_id(0);
        s.apply(&Mutation::Add {
            id: id.clone(),
            record: Box::new(r),
        })
        .unwrap();
        let complete = |k, end, now_ms| Mutation::Complete {
            id: id.clone(),
            k,
            end,
            now_ms,
            catch_up: CU,
        };
        let t0 = 1_700_000_000_000;
        assert_eq!(
            s.apply(&complete(0, FireEnd::Retry { at_ms: t0 + 100 }, t0))
                .unwrap(),
            Applied::Rescheduled {
                due_ms: t0 + 100,
                skipped: 0,
                dead: false
            }
        );
        assert_eq!(s.record(&id).unwrap().unwrap().attempts, 1);
        assert_eq!(
            s.apply(&complete(0, FireEnd::Ok, t0 + 200)).unwrap(),
            Applied::Rescheduled {
                due_ms: t0 + 10_000,
                skipped: 0,
                dead: false
            }
        );
        assert_eq!(
            s.apply(&complete(0, FireEnd::Ok, t0 + 200)).unwrap(),
            Applied::Stale
        );
        let dead = FireEnd::Dead {
            code: 11,
            msg: "bad".into(),
        };
        assert_eq!(
            s.apply(&complete(1, dead, t0 + 10_000)).unwrap(),
            Applied::Rescheduled {
                due_ms: t0 + 20_000,
                skipped: 0,
                dead: true
            }
        );
        assert_eq!(s.dead_of(&id).unwrap()[0].k, 1);
        assert_eq!(
            s.apply(&complete(2, FireEnd::Ok, t0 + 20_000)).unwrap(),
            Applied::Finished(Final::Completed)
        );
        assert!(s.record(&id).unwrap().is_none());
        assert!(s.due_range(0, i64::MAX, 10).unwrap().is_empty());
        // trim by retention
        assert_eq!(
            s.apply(&Mutation::Trim {
                before_ms: t0 + 30_000,
                dead_before_ms: t0 + 30_000,
                limit: 100
            })
            .unwrap(),
            Applied::Trimmed(2)
        );
        assert!(s.done(&id).unwrap().is_none());
        assert_eq!(s.dead_count(), 0);
    }

    /// Opens a store in `dir`, adds one record, flushes and closes it: (record, id).
    #[test]
    fn data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (r, id) = closed_store_with_one_add(dir.path(), KIND);
        let s = open(dir.path(), KIND);
        assert_eq!(s.record(&id).unwrap(), Some(r));
        assert_eq!(s.count_pending().unwrap(), 1);
        assert_eq!(s.first_due().unwrap(), Some(1_700_000_000_000));
    }

    #[test]
    fn trim_reads_group_and_per_id_time_entries() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), KIND);
        let t0 = 1_700_000_000_000;
        let mut adds = vec![];
        let mut ids = vec![];
        for i in 0..3 {
            let r = rec(2, 1_700_000_000 + i, 0, 0);
            let id = r.occurrence_id(0);
            adds.push(Mutation::Add {
                id: id.clone(),
                record: Box::new(r),
            });
            ids.push(id);
        }
        let refs: Vec<&Mutation> = adds.iter().collect();
        s.apply_group(&refs).unwrap();
        let done: Vec<Mutation> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Mutation::Complete {
                id: id.clone(),
                k: 0,
                end: FireEnd::Ok,
                now_ms: t0 + i as i64,
                catch_up: CU,
            })
            .collect();
        let refs: Vec<&Mutation> = done.iter().collect();
        s.apply_group(&refs).unwrap();
        assert_eq!(
            s.kv.len(TreeId::DoneByTime).unwrap(),
            1,
            "one time entry per group"
        );
        // An entry as older stores wrote it: finished ms ‖ id, empty value.
        let old = Mutation::Cancel {
            id: "old".into(),
            topic: "t".into(),
            at_ms: t0,
            principal: None,
        };
        s.apply(&old).unwrap();
        let kv = &s.kv;
        assert!(kv
            .remove(TreeId::DoneByTime, &group_time_key(t0, "old"))
            .unwrap()
            .is_some());
        kv.insert(TreeId::DoneByTime, &due_key(t0, "old"), &[])
            .unwrap();
        // Not yet past retention for the latest id of the group: nothing goes.
        let trim = |before_ms| Mutation::Trim {
            before_ms,
            dead_before_ms: 0,
            limit: 100,
        };
        assert_eq!(s.apply(&trim(t0 + 2)).unwrap(), Applied::Trimmed(1));
        assert!(s.done("old").unwrap().is_none());
        assert!(s.done(&ids[0]).unwrap().is_some());
        assert_eq!(s.apply(&trim(t0 + 3)).unwrap(), Applied::Trimmed(3));
        for id in &ids {
            assert!(s.done(id).unwrap().is_none());
        }
        assert_eq!(s.kv.len(TreeId::DoneByTime).unwrap(), 0);
    }

    #[test]
    fn a_group_sees_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), KIND);
        let r = rec(2, 1_700_000_000, 0, 0);
        let id = r.occurrence_id(0);
        let add = Mutation::Add {
            id: id.clone(),
            record: Box::new(r),
        };
        let cancel = Mutation::Cancel {
            id: id.clone(),
            topic: "t".into(),
            at_ms: 1,
            principal: None,
        };
        let out = s.apply_group(&[&add, &add, &cancel, &add]).unwrap();
        assert_eq!(
            out,
            vec![
                Applied::Added {
                    due_ms: 1_700_000_000_000
                },
                Applied::AddExisting,
                Applied::Cancel(CancelResult::Cancelled),
                Applied::AddExisting,
            ]
        );
        assert_eq!(s.count_pending().unwrap(), 0);
        assert!(s.due_range(0, i64::MAX, 10).unwrap().is_empty());
    }

    /// The committer's groups carry the fired-through watermark in their own transaction; it
    /// never claims more than what has fired, and the pending count is one write per group.
    #[test]
    fn a_marked_group_stores_a_watermark_at_or_below_the_first_due() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), KIND);
        let watermark = |s: &Db| s.meta("fired_through_ms").unwrap().map(|v| {
            i64::from_be_bytes(<[u8; 8]>::try_from(v.as_slice()).unwrap())
        });
        let (late, early) = (rec(2, 1_700_000_100, 0, 0), rec(2, 1_700_000_000, 0, 0));
        let add = |r: &Record| Mutation::Add {
            id: r.occurrence_id(0),
            record: Box::new(r.clone()),
        };
        s.apply_group_marked(&[&add(&late)], s.first_due().unwrap())
            .unwrap();
        assert_eq!(watermark(&s), Some(1_700_000_100_000 - 1));
        // An add earlier than everything pending lowers it in the same group.
        s.apply_group_marked(&[&add(&early)], s.first_due().unwrap())
            .unwrap();
        assert_eq!(watermark(&s), Some(1_700_000_000_000 - 1));
        assert_eq!(s.count_pending().unwrap(), 2);
        // Firing the early one: the group's watermark stays below it (a lower bound); the
        // next group's reaches the late one.
        let fired = Mutation::Complete {
            id: early.occurrence_id(0),
            k: 0,
            end: FireEnd::Ok,
            now_ms: 1_700_000_000_001,
            catch_up: CU,
        };
        s.apply_group_marked(&[&fired], s.first_due().unwrap())
            .unwrap();
        assert_eq!(watermark(&s), Some(1_700_000_000_000 - 1));
        s.apply_group_marked(&[], s.first_due().unwrap()).unwrap();
        assert_eq!(watermark(&s), Some(1_700_000_100_000 - 1));
        assert_eq!(s.count_pending().unwrap(), 1);
        // A group that is not marked leaves it alone.
        s.apply_group(&[&add(&rec(2, 1_600_000_000, 0, 0))]).unwrap();
        assert_eq!(watermark(&s), Some(1_700_000_100_000 - 1));
        assert_eq!(s.count_pending().unwrap(), 2);
        // One read for several records: in order, missing ones as None.
        let ids = [early.occurrence_id(0), late.occurrence_id(0)];
        let got: Vec<_> = s.records(&ids).unwrap().into_iter().map(Result::unwrap).collect();
        assert_eq!(got, vec![None, Some(late.clone())]);
    }

    #[test]
    fn cancel_is_bound_to_the_adding_principal() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), KIND);
        let mut r = rec(2, 1_700_000_000, 0, 0);
        r.owner = "alice".into();
        let id = r.occurrence_id(0);
        s.apply(&Mutation::Add {
            id: id.clone(),
            record: Box::new(r),
        })
        .unwrap();
        let cancel = |p: Option<&str>| Mutation::Cancel {
            id: id.clone(),
            topic: "t".into(),
            at_ms: 5,
            principal: p.map(str::to_string),
        };
        assert_eq!(
            s.apply(&cancel(Some("bob"))).unwrap(),
            Applied::Cancel(CancelResult::NotOwner)
        );
        assert_eq!(
            s.due_range(0, i64::MAX, 10).unwrap().len(),
            1,
            "still pending"
        );
        assert_eq!(
            s.apply(&cancel(Some("alice"))).unwrap(),
            Applied::Cancel(CancelResult::Cancelled)
        );
    }
}
