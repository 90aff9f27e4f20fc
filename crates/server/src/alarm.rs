//! Cluster-wide alarms (NOSPACE, CORRUPT), changed only by applying raft
//! entries, so every member holds the same list.
//!
//! Left for the operations issue: persisting the list in the backend (today
//! it lives in memory and starts empty) and the producers (the quota check
//! that raises NOSPACE, the corruption checker that raises CORRUPT).

use std::sync::Mutex;

use api::etcdserverpb::{alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmType};

#[derive(Default)]
pub struct AlarmStore {
    active: Mutex<Vec<AlarmMember>>,
}

impl AlarmStore {
    /// Applies an alarm request; returns the alarms etcd reports for it: all of
    /// the given type (every type for NONE) for GET, the changed one for
    /// ACTIVATE/DEACTIVATE (none when nothing changed).
    pub fn apply(&self, r: &AlarmRequest) -> Vec<AlarmMember> {
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
            .apply(&req(AlarmAction::Get, 0, AlarmType::None))
            .is_empty());
        assert_eq!(
            s.apply(&req(AlarmAction::Activate, 1, AlarmType::Nospace))
                .len(),
            1
        );
        assert!(s
            .apply(&req(AlarmAction::Activate, 1, AlarmType::Nospace))
            .is_empty());
        s.apply(&req(AlarmAction::Activate, 2, AlarmType::Corrupt));
        assert_eq!(s.apply(&req(AlarmAction::Get, 0, AlarmType::None)).len(), 2);
        assert_eq!(
            s.apply(&req(AlarmAction::Get, 0, AlarmType::Corrupt)).len(),
            1
        );
        assert_eq!(
            s.apply(&req(AlarmAction::Deactivate, 1, AlarmType::Nospace))
                .len(),
            1
        );
        assert!(s
            .apply(&req(AlarmAction::Deactivate, 1, AlarmType::Nospace))
            .is_empty());
        assert_eq!(s.active().len(), 1);
    }
}
