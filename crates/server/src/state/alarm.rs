//! Cluster-wide alarms (NOSPACE, CORRUPT), changed only by applying raft
//! entries, so every member holds the same list. The list is kept in the
//! backend's "alarm" table (keys: the encoded AlarmMember, as etcd keys its
//! alarm bucket), written in the batch of the entry that changed it, and
//! reloaded at start and after a leader's snapshot.
//!
//! Producers: the quota check (NOSPACE, `server.rs`) and the corruption
//! checker (CORRUPT, `corrupt.rs`). While an alarm is active the applier
//! refuses what etcd refuses (`Alarms::refusal`).

use std::sync::Mutex;

use api::etcdserverpb::{alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmType};
use api::EtcdError;
use prost::Message;

/// What a change to the list means for the backend's alarm table.
#[derive(Debug, PartialEq, Eq)]
pub enum AlarmRow {
    Put(Vec<u8>),
    Delete(Vec<u8>),
}

/// The backend key of an alarm.
pub fn alarm_key(a: &AlarmMember) -> Vec<u8> {
    a.encode_to_vec()
}

#[derive(Default)]
pub struct AlarmStore {
    active: Mutex<Vec<AlarmMember>>,
}

impl AlarmStore {
    /// Loads the list from the backend's alarm rows (replacing it).
    pub fn recover(&self, rows: &[Vec<u8>]) -> crate::status::Result<()> {
        use crate::status::Context;
        let mut loaded = Vec::with_capacity(rows.len());
        for row in rows {
            let a = AlarmMember::decode(row.as_slice())
                .context("an alarm row of the backend is unreadable")?;
            loaded.push(a);
        }
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(())
    }

    /// Applies an alarm request; returns the alarms etcd reports for it: all of
    /// the given type (every type for NONE) for GET, the changed one for
    /// ACTIVATE/DEACTIVATE (none when nothing changed), and the backend row to
    /// write for a change.
    pub fn apply(&self, r: &AlarmRequest) -> (Vec<AlarmMember>, Option<AlarmRow>) {
        let changed = self.change(r);
        let row = match (AlarmAction::try_from(r.action), changed.first()) {
            (Ok(AlarmAction::Activate), Some(a)) => Some(AlarmRow::Put(alarm_key(a))),
            (Ok(AlarmAction::Deactivate), Some(a)) => Some(AlarmRow::Delete(alarm_key(a))),
            _ => None,
        };
        (changed, row)
    }

    /// Whether an alarm of `kind` is active on any member.
    #[cfg(test)]
    pub fn has(&self, kind: AlarmType) -> bool {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|a| a.alarm == kind as i32)
    }

    /// etcd's capped and corrupt appliers: with CORRUPT active every write
    /// (and a lease grant or revoke) fails with "corrupt cluster"; with
    /// NOSPACE active, what adds data (a put, a txn with a put, a lease
    /// grant) fails with "database space exceeded". Deletes and compactions
    /// still work under NOSPACE, so space can be freed.
    pub fn refusal(&self, adds_data: bool) -> Option<EtcdError> {
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        if adds_data && active.iter().any(|a| a.alarm == AlarmType::Nospace as i32) {
            return Some(EtcdError::NoSpace);
        }
        if active.iter().any(|a| a.alarm == AlarmType::Corrupt as i32) {
            return Some(EtcdError::Corrupt);
        }
        None
    }

    fn change(&self, r: &AlarmRequest) -> Vec<AlarmMember> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let member = AlarmMember {
            member_id: r.member_id,
            alarm: r.alarm,
        };
        match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => active
                .iter()
                .filter(|a| r.alarm == AlarmType::None as i32 || a.alarm == r.alarm)
                .cloned()
                .collect(),
            Ok(AlarmAction::Activate) => {
                if r.alarm == AlarmType::None as i32 || active.contains(&member) {
                    return Vec::new();
                }
                tracing::warn!(
                    member_id = %format!("{:x}", r.member_id),
                    alarm = AlarmType::try_from(r.alarm).map_or("unknown", |a| a.as_str_name()),
                    "alarm raised"
                );
                active.push(member);
                vec![member]
            }
            Ok(AlarmAction::Deactivate) => match active.iter().position(|a| *a == member) {
                Some(i) => {
                    tracing::info!(
                        member_id = %format!("{:x}", r.member_id),
                        alarm = AlarmType::try_from(r.alarm).map_or("unknown", |a| a.as_str_name()),
                        "alarm disarmed"
                    );
                    vec![active.remove(i)]
                }
                None => Vec::new(),
            },
            Err(_) => Vec::new(),
        }
    }

    /// The active alarms, for Status's `errors`.
    pub fn active(&self) -> Vec<AlarmMember> {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(action: AlarmAction, member_id: u64, alarm: AlarmType) -> AlarmRequest {
        AlarmRequest {
            action: action as i32,
            member_id,
            alarm: alarm as i32,
        }
    }

    #[test]
    fn activate_get_deactivate() {
        let s = AlarmStore::default();
        assert!(s
            .change(&req(AlarmAction::Get, 0, AlarmType::None))
            .is_empty());
        assert_eq!(
            s.change(&req(AlarmAction::Activate, 1, AlarmType::Nospace))
                .len(),
            1
        );
        assert!(s
            .change(&req(AlarmAction::Activate, 1, AlarmType::Nospace))
            .is_empty());
        s.change(&req(AlarmAction::Activate, 2, AlarmType::Corrupt));
        assert_eq!(
            s.change(&req(AlarmAction::Get, 0, AlarmType::None)).len(),
            2
        );
        assert_eq!(
            s.change(&req(AlarmAction::Get, 0, AlarmType::Corrupt))
                .len(),
            1
        );
        assert_eq!(
            s.change(&req(AlarmAction::Deactivate, 1, AlarmType::Nospace))
                .len(),
            1
        );
        assert!(s
            .change(&req(AlarmAction::Deactivate, 1, AlarmType::Nospace))
            .is_empty());
        assert_eq!(s.active().len(), 1);
    }

    #[test]
    fn rows_round_trip_and_refusals() {
        let s = AlarmStore::default();
        let (changed, row) = s.apply(&req(AlarmAction::Activate, 7, AlarmType::Nospace));
        assert_eq!(changed.len(), 1);
        let Some(AlarmRow::Put(key)) = row else {
            panic!("no row for an activation")
        };
        assert_eq!(s.refusal(true), Some(EtcdError::NoSpace));
        assert_eq!(s.refusal(false), None);
        let restarted = AlarmStore::default();
        restarted.recover(std::slice::from_ref(&key)).unwrap();
        assert_eq!(restarted.active(), s.active());
        assert!(restarted.has(AlarmType::Nospace));
        assert_eq!(
            s.apply(&req(AlarmAction::Activate, 7, AlarmType::Nospace))
                .1,
            None
        );
        assert_eq!(
            s.apply(&req(AlarmAction::Deactivate, 7, AlarmType::Nospace))
                .1,
            Some(AlarmRow::Delete(key))
        );
        s.apply(&req(AlarmAction::Activate, 8, AlarmType::Corrupt));
        assert_eq!(s.refusal(false), Some(EtcdError::Corrupt));
        assert!(restarted.recover(&[vec![0xff, 0xff]]).is_err());
    }
}
