//! Failed-login throttling: a small keyed back-off table.
//!
//! Each key (a user name, a client address) counts failed password checks. The first
//! `free` failures cost nothing; every further failure blocks the key for twice as long as the
//! one before (1 s, 2 s, 4 s, … at most [`MAX_BLOCK`]). A key with no failure for
//! [`FORGET_AFTER`] (and no block left) is forgotten. Checks that are still running count
//! against the key too, so a burst of parallel guesses is cut off like a sequence of them.
//!
//! Bounded: at most `capacity` keys; when full, forgotten keys are dropped first, then the key
//! whose last failure is oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Longest block of one key.
pub const MAX_BLOCK: Duration = Duration::from_secs(15 * 60);
/// A key is forgotten after this long without a failure (once its block has passed).
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// First block, doubled by every further failure.
pub const FIRST_BLOCK: Duration = Duration::from_secs(1);

/// What a counter is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A user name as typed, lower-cased (names are unique without regard to case).
    User(String),
    /// A client address (IPv6: its /64).
    Addr(IpAddr),
}

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    /// Checks that began and have not finished yet.
    pending: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

/// The back-off table. Not synchronized: the owner keeps it behind a mutex.
#[derive(Debug)]
pub struct Throttle {
    entries: HashMap<Key, Entry>,
    capacity: usize,
}

/// How many failures each kind of key gets for free.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    pub per_user: u32,
    pub per_addr: u32,
}

impl Allowance {
    fn of(&self, key: &Key) -> u32 {
        match key {
            Key::User(_) => self.per_user,
            Key::Addr(_) => self.per_addr,
        }
    }
}

impl Throttle {
    pub fn new(capacity: usize) -> Throttle {
        Throttle {
            entries: HashMap::new(),
            capacity: capacity.max(2),
        }
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Starts a password check for `keys`: `Err(retry_after)` when any key is blocked or has
    /// used up its free attempts with the checks still running; otherwise the check is counted
    /// as pending until [`Throttle::finish`] or [`Throttle::abandon`].
    pub fn begin(&mut self, keys: &[Key], allow: Allowance, now: Instant) -> Result<(), Duration> {
        let mut wait = Duration::ZERO;
        for key in keys {
            if let Some(e) = self.entries.get(key) {
                if let Some(until) = e.blocked_until {
                    if until > now {
                        wait = wait.max(until - now);
                        continue;
                    }
                }
                if e.failures + e.pending >= allow.of(key).max(1) && e.pending > 0 {
                    // Parallel guesses: as many as are free are running already.
                    wait = wait.max(FIRST_BLOCK);
                }
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for key in keys {
            self.make_room(key, now);
            let e = self.entries.entry(key.clone()).or_insert(Entry {
                failures: 0,
                pending: 0,
                last_failure: now,
                blocked_until: None,
            });
            e.pending += 1;
        }
        Ok(())
    }

    /// Ends a check begun by [`Throttle::begin`]. A success clears the user key (not the
    /// address: one's own account must not reset an address's guesses at others).
    pub fn finish(&mut self, keys: &[Key], ok: bool, allow: Allowance, now: Instant) {
        for key in keys {
            let Some(e) = self.entries.get_mut(key) else {
                continue;
            };
            e.pending = e.pending.saturating_sub(1);
            if ok {
                if matches!(key, Key::User(_)) {
                    e.failures = 0;
                    e.blocked_until = None;
                }
            } else {
                e.failures = e.failures.saturating_add(1);
                e.last_failure = now;
                let free = allow.of(key);
                if e.failures >= free {
                    let doublings = (e.failures - free).min(20);
                    let block = FIRST_BLOCK.saturating_mul(1 << doublings).min(MAX_BLOCK);
                    e.blocked_until = Some(now + block);
                }
            }
            if e.failures == 0 && e.pending == 0 {
                self.entries.remove(key);
            }
        }
    }

    /// Ends a check that never reached a verdict (the request went away).
    pub fn abandon(&mut self, keys: &[Key]) {
        for key in keys {
            if let Some(e) = self.entries.get_mut(key) {
                e.pending = e.pending.saturating_sub(1);
                if e.failures == 0 && e.pending == 0 {
                    self.entries.remove(key);
                }
            }
        }
    }

    fn forgotten(e: &Entry, now: Instant) -> bool {
        e.pending == 0
            && e.blocked_until.is_none_or(|until| until <= now)
            && now.saturating_duration_since(e.last_failure) >= FORGET_AFTER
    }

    fn make_room(&mut self, key: &Key, now: Instant) {
        if self.entries.contains_key(key) || self.entries.len() < self.capacity {
            return;
        }
        self.entries.retain(|_, e| !Self::forgotten(e, now));
        if self.entries.len() < self.capacity {
            return;
        }
        let oldest = self
            .entries
            .iter()
            .filter(|(_, e)| e.pending == 0)
            .min_by_key(|(_, e)| e.last_failure)
            .map(|(k, _)| k.clone());
        if let Some(oldest) = oldest {
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW: Allowance = Allowance {
        per_user: 5,
        per_addr: 20,
    };

    fn fail(t: &mut Throttle, keys: &[Key], now: Instant) -> Result<(), Duration> {
        t.begin(keys, ALLOW, now)?;
        t.finish(keys, false, ALLOW, now);
        Ok(())
    }

    #[test]
    fn five_free_then_doubling_blocks() {
        let mut t = Throttle::new(100);
        let keys = [Key::User("bob".into())];
        let now = Instant::now();
        for _ in 0..5 {
            fail(&mut t, &keys, now).expect("free attempt");
        }
        assert_eq!(fail(&mut t, &keys, now), Err(FIRST_BLOCK));
        let later = now + FIRST_BLOCK;
        fail(&mut t, &keys, later).expect("block over");
        assert_eq!(fail(&mut t, &keys, later), Err(FIRST_BLOCK * 2));
        let much_later = later + MAX_BLOCK + FORGET_AFTER;
        t.begin(&keys, ALLOW, much_later).expect("block over");
        t.finish(&keys, true, ALLOW, much_later);
        assert!(t.is_empty(), "a success clears the user key");
    }

    #[test]
    fn parallel_checks_count_as_attempts() {
        let mut t = Throttle::new(100);
        let keys = [Key::User("bob".into())];
        let now = Instant::now();
        for _ in 0..5 {
            t.begin(&keys, ALLOW, now).expect("free attempt");
        }
        assert!(t.begin(&keys, ALLOW, now).is_err());
        t.abandon(&keys);
        t.begin(&keys, ALLOW, now).expect("one slot free again");
    }

    #[test]
    fn success_does_not_clear_the_address() {
        let mut t = Throttle::new(100);
        let addr = Key::Addr(IpAddr::from([10, 0, 0, 1]));
        let now = Instant::now();
        for i in 0..20 {
            fail(&mut t, &[Key::User(format!("u{i}")), addr.clone()], now).expect("free");
        }
        let keys = [Key::User("mine".into()), addr.clone()];
        assert!(t.begin(&keys, ALLOW, now).is_err());
    }

    #[test]
    fn capacity_is_bounded() {
        let mut t = Throttle::new(50);
        let now = Instant::now();
        for i in 0..10_000u32 {
            let _ = fail(&mut t, &[Key::User(format!("u{i}"))], now);
            assert!(t.len() <= 50);
        }
    }
}
