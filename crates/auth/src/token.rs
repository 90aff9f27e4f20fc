//! etcd's `simple` tokens: a random prefix and the raft index of the
//! Authenticate entry (`AbCdEfGhIjKlMnOp.42`), held by every member that
//! applied the entry, each valid for `--auth-token-ttl` after its last use.
//!
//! The clock is the caller's (`now` arguments), so expiry is tested
//! without sleeping and the server's clock seam applies.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `--auth-token-ttl`'s default (etcd: 300 s).
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const PREFIX_LEN: usize = 16;

/// A random token prefix, as the member that proposes an Authenticate
/// entry makes it.
pub fn prefix(mut random: impl FnMut() -> u64) -> String {
    (0..PREFIX_LEN)
        .map(|_| LETTERS[(random() % LETTERS.len() as u64) as usize] as char)
        .collect()
}

/// A random token prefix from the operating system's random source.
pub fn random_prefix() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; PREFIX_LEN * 8];
    getrandom::fill(&mut bytes)?;
    let mut words = bytes.chunks_exact(8).map(|c| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        u64::from_le_bytes(w)
    });
    Ok(prefix(|| words.next().unwrap_or(0)))
}

/// The raft index a simple token names, if it has etcd's form.
pub fn index_of(token: &str) -> Option<u64> {
    let (_, index) = token.split_once('.')?;
    if index.contains('.') {
        return None;
    }
    index.parse().ok()
}

struct Held {
    user: String,
    expires: Instant,
}

/// The simple tokens this member holds (etcd's `tokenSimple`).
pub struct SimpleTokens {
    ttl: Duration,
    held: Mutex<Option<HashMap<String, Held>>>,
}

impl SimpleTokens {
    /// Tokens valid for `ttl` after their last use (zero: the default).
    pub fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens {
            ttl: if ttl.is_zero() { DEFAULT_TTL } else { ttl },
            held: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<HashMap<String, Held>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Auth was enabled: tokens may be assigned.
    pub fn enable(&self) {
        let mut held = self.lock();
        if held.is_none() {
            *held = Some(HashMap::new());
        }
    }

    /// Auth was disabled: every token is dropped.
    pub fn disable(&self) {
        *self.lock() = None;
    }

    /// Records the token an applied Authenticate entry assigns to `user`
    /// (`prefix.index`); returns it. Nothing is held while auth is off.
    pub fn assign(&self, user: &str, prefix: &str, index: u64, now: Instant) -> String {
        let token = format!("{prefix}.{index}");
        if let Some(held) = self.lock().as_mut() {
            // Tokens past their life go as new ones come (a bcrypt check
            // costs far more than this pass).
            held.retain(|_, h| now <= h.expires);
            held.insert(
                token.clone(),
                Held {
                    user: user.to_string(),
                    expires: now + self.ttl,
                },
            );
        }
        token
    }

    /// The user a token stands for, if it is held and alive; its life
    /// starts again.
    pub fn user(&self, token: &str, now: Instant) -> Option<String> {
        let mut held = self.lock();
        let entry = held.as_mut()?.get_mut(token)?;
        if now > entry.expires {
            return None;
        }
        entry.expires = now + self.ttl;
        Some(entry.user.clone())
    }

    /// Drops every token of `user` (deleted, or a new password).
    pub fn invalidate_user(&self, user: &str) {
        if let Some(held) = self.lock().as_mut() {
            held.retain(|_, h| h.user != user);
        }
    }

    /// Drops the tokens unused for their TTL; returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let mut held = self.lock();
        let Some(held) = held.as_mut() else {
            return 0;
        };
        let before = held.len();
        held.retain(|_, h| now <= h.expires);
        before - held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_live_for_their_ttl_after_last_use() {
        let t0 = Instant::now();
        let tokens = SimpleTokens::new(Duration::from_secs(10));
        assert_eq!(tokens.assign("u", "abc", 7, t0), "abc.7");
        assert_eq!(tokens.user("abc.7", t0), None, "auth off: nothing held");
        tokens.enable();
        let token = tokens.assign("u", "abc", 8, t0);
        assert_eq!(
            tokens.user(&token, t0 + Duration::from_secs(9)).as_deref(),
            Some("u")
        );
        // Used at 9 s: alive until 19 s.
        assert_eq!(tokens.expire(t0 + Duration::from_secs(15)), 0);
        assert_eq!(tokens.user(&token, t0 + Duration::from_secs(20)), None);
        assert_eq!(tokens.expire(t0 + Duration::from_secs(20)), 1);
    }

    #[test]
    fn users_and_disabling_drop_tokens() {
        let now = Instant::now();
        let tokens = SimpleTokens::new(Duration::ZERO);
        tokens.enable();
        let a = tokens.assign("a", "p", 1, now);
        let b = tokens.assign("b", "q", 2, now);
        tokens.invalidate_user("a");
        assert_eq!(tokens.user(&a, now), None);
        assert_eq!(tokens.user(&b, now).as_deref(), Some("b"));
        assert_eq!(
            tokens.user(&b, now + DEFAULT_TTL).as_deref(),
            Some("b"),
            "zero TTL means etcd's default"
        );
        tokens.disable();
        assert_eq!(tokens.user(&b, now), None);
    }

    #[test]
    fn prefixes_and_indexes() {
        let mut n = 0u64;
        let p = prefix(|| {
            n += 1;
            n
        });
        assert_eq!(p.len(), 16);
        assert!(p.bytes().all(|c| c.is_ascii_alphabetic()));
        let random = random_prefix().expect("random");
        assert_eq!(random.len(), 16);
        assert_ne!(random, random_prefix().expect("random"));
        assert_eq!(index_of("abc.42"), Some(42));
        assert_eq!(index_of("abc"), None);
        assert_eq!(index_of("a.b.1"), None);
        assert_eq!(index_of("abc.x"), None);
    }
}
