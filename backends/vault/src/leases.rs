//! The leases an instance obtained: kept for renewal while hushbox runs and
//! for revocation when it exits. Lease ids are not secrets on their own
//! (they name a lease; revoking or renewing one needs a token).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hushbox_core::Lease;
use tokio::sync::Notify;

/// One lease hushbox holds.
#[derive(Debug, Clone)]
struct Held {
    id: String,
    ttl: Duration,
    renewable: bool,
    /// When the TTL was last set (obtained or renewed).
    since: Instant,
    /// When to try again after a failed renewal, instead of the 2/3 mark.
    retry_at: Option<Instant>,
    revoked: bool,
}

impl Held {
    /// When this lease is due for renewal: 2/3 of its TTL after it was set.
    fn due(&self) -> Option<Instant> {
        if self.revoked || !self.renewable || self.ttl.is_zero() {
            return None;
        }
        Some(self.retry_at.unwrap_or(self.since + self.ttl * 2 / 3))
    }
}

#[derive(Default)]
pub(crate) struct Leases {
    held: Mutex<Vec<Held>>,
    /// Signalled when a lease is added, so a renewal loop that sleeps until
    /// its next deadline wakes for the new one.
    pub(crate) changed: Notify,
}

impl Leases {
    fn held(&self) -> std::sync::MutexGuard<'_, Vec<Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers a lease from a fetch (expiry-only leases, with an empty id,
    /// are not held: there is nothing to renew or revoke).
    pub(crate) fn record(&self, lease: &Lease) {
        if lease.id.is_empty() {
            return;
        }
        self.held().push(Held {
            id: lease.id.clone(),
            ttl: lease.ttl,
            renewable: lease.renewable,
            since: Instant::now(),
            retry_at: None,
            revoked: false,
        });
        self.changed.notify_one();
    }

    /// The leases held and not revoked, as last renewed.
    pub(crate) fn active(&self) -> Vec<Lease> {
        self.held()
            .iter()
            .filter(|held| !held.revoked)
            .map(|held| Lease {
                id: held.id.clone(),
                ttl: held.ttl.saturating_sub(held.since.elapsed()),
                renewable: held.renewable,
            })
            .collect()
    }

    /// Ids of the leases due for renewal at `now`, and the next deadline
    /// after them.
    pub(crate) fn due(&self, now: Instant) -> (Vec<String>, Option<Instant>) {
        let held = self.held();
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for lease in held.iter() {
            match lease.due() {
                Some(at) if at <= now => due.push(lease.id.clone()),
                Some(at) => next = Some(next.map_or(at, |next| next.min(at))),
                None => {}
            }
        }
        (due, next)
    }

    /// Records a renewal's answer.
    pub(crate) fn renewed(&self, id: &str, ttl: Duration, renewable: bool) {
        for lease in self.held().iter_mut().filter(|lease| lease.id == id) {
            lease.ttl = ttl;
            lease.renewable = renewable;
            lease.since = Instant::now();
            lease.retry_at = None;
        }
    }

    /// A renewal failed: try again after `wait`, or give up on renewing it.
    pub(crate) fn renewal_failed(&self, id: &str, wait: Option<Duration>) {
        for lease in self.held().iter_mut().filter(|lease| lease.id == id) {
            match wait {
                Some(wait) => lease.retry_at = Some(Instant::now() + wait),
                None => lease.renewable = false,
            }
        }
    }

    /// What is left of a lease's TTL.
    pub(crate) fn remaining(&self, id: &str) -> Duration {
        self.held()
            .iter()
            .find(|lease| lease.id == id)
            .map_or(Duration::ZERO, |lease| {
                lease.ttl.saturating_sub(lease.since.elapsed())
            })
    }

    /// Ids of the leases not yet revoked.
    pub(crate) fn to_revoke(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .held()
            .iter()
            .filter(|lease| !lease.revoked)
            .map(|lease| lease.id.clone())
            .collect();
        ids.dedup();
        ids
    }

    pub(crate) fn revoked(&self, id: &str) {
        for lease in self.held().iter_mut().filter(|lease| lease.id == id) {
            lease.revoked = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: &str, seconds: u64, renewable: bool) -> Lease {
        Lease {
            id: id.into(),
            ttl: Duration::from_secs(seconds),
            renewable,
        }
    }

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_ttl() {
        let leases = Leases::default();
        let start = Instant::now();
        leases.record(&lease("a", 30, true));
        leases.record(&lease("b", 300, true));
        leases.record(&lease("fixed", 30, false));
        leases.record(&lease("", 30, false));
        let (due, next) = leases.due(start);
        assert!(due.is_empty());
        let next = next.unwrap();
        assert!(next >= start + Duration::from_secs(19) && next <= start + Duration::from_secs(21));
        let (due, _) = leases.due(start + Duration::from_secs(21));
        assert_eq!(due, vec!["a".to_owned()]);
        leases.renewed("a", Duration::from_secs(60), true);
        let (due, _) = leases.due(start + Duration::from_secs(21));
        assert!(due.is_empty());
        assert_eq!(leases.active().len(), 3);
    }

    #[test]
    fn failed_renewals_retry_or_stop_and_revoked_leases_are_done() {
        let leases = Leases::default();
        leases.record(&lease("a", 30, true));
        leases.renewal_failed("a", Some(Duration::from_secs(1)));
        let (_, next) = leases.due(Instant::now());
        assert!(next.unwrap() <= Instant::now() + Duration::from_secs(1));
        leases.renewal_failed("a", None);
        assert_eq!(leases.due(Instant::now()), (vec![], None));
        assert_eq!(leases.to_revoke(), vec!["a".to_owned()]);
        leases.revoked("a");
        assert!(leases.to_revoke().is_empty());
        assert!(leases.active().is_empty());
    }
}
