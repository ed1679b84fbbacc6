//! When each secret is due: its interval after a success (sooner when a
//! lease or certificate would expire first: at two thirds of its life, as
//! Vault Agent renews), exponential backoff with jitter after a failure.

use std::time::{Duration, Instant};

use rand::Rng;

/// The first retry after a failure comes after this (or the interval, if
/// shorter).
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Retries never wait longer than this (or the interval, if longer).
const LONGEST_RETRY: Duration = Duration::from_secs(30);

/// One secret's schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    interval: Duration,
    next: Instant,
    failures: u32,
}

impl Schedule {
    /// A schedule whose first round is one interval (or two thirds of the
    /// lease) from `now`.
    pub fn new(now: Instant, interval: Duration, lease: Option<Duration>) -> Self {
        let mut schedule = Self {
            interval,
            next: now,
            failures: 0,
        };
        schedule.succeeded(now, lease);
        schedule
    }

    /// The configured interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// When it is next due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// Whether it is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next <= now
    }

    /// After a successful fetch (or an unchanged change token).
    pub fn succeeded(&mut self, now: Instant, lease: Option<Duration>) {
        self.failures = 0;
        let mut wait = self.interval;
        if let Some(ttl) = lease.filter(|ttl| !ttl.is_zero()) {
            wait = wait.min(ttl * 2 / 3);
        }
        self.next = now + wait;
    }

    /// After a failure: 1 s, 2 s, 4 s… up to the longer of the interval
    /// and 30 s, each ±20 % so that many watchers do not retry in step.
    pub fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let first = FIRST_RETRY.min(self.interval);
        let longest = LONGEST_RETRY.max(self.interval);
        let exponent = (self.failures - 1).min(16);
        let wait = first.saturating_mul(1 << exponent).min(longest);
        let jitter = rand::rng().random_range(0.8..1.2);
        self.next = now + wait.mul_f64(jitter);
    }

    /// Due at once.
    pub fn retry_now(&mut self) {
        self.next = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_lease_and_backoff() {
        let now = Instant::now();
        let plain = Schedule::new(now, Duration::from_secs(60), None);
        assert_eq!(plain.next(), now + Duration::from_secs(60));
        let leased = Schedule::new(now, Duration::from_secs(60), Some(Duration::from_secs(30)));
        assert_eq!(leased.next(), now + Duration::from_secs(20));

        let mut failing = Schedule::new(now, Duration::from_secs(10), None);
        let mut waits = Vec::new();
        for _ in 0..8 {
            failing.failed(now);
            waits.push(failing.next() - now);
        }
        assert!(waits[0] >= Duration::from_millis(800) && waits[0] <= Duration::from_millis(1200));
        assert!(waits[2] >= Duration::from_millis(3200) && waits[2] <= Duration::from_millis(4800));
        assert!(
            waits.iter().all(|wait| *wait <= Duration::from_secs(36)),
            "{waits:?}"
        );
        failing.succeeded(now, None);
        assert_eq!(failing.next(), now + Duration::from_secs(10));
    }
}
