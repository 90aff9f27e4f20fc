//! Passwords as etcd keeps them: bcrypt hashes (`$2a$…`), carried in log
//! entries base64-encoded (`hashedPassword`, etcd 3.5 and later) so that the
//! slow hashing happens once, before proposing, never on the raft loop.

use base64::Engine;

/// bcrypt's cost when `--bcrypt-cost` is not given (Go's `bcrypt.DefaultCost`).
pub const DEFAULT_COST: u32 = 10;
/// The costs bcrypt accepts; etcd falls back to the default outside them.
pub const MIN_COST: u32 = 4;
pub const MAX_COST: u32 = 31;

/// Why a password cannot be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Go's bcrypt refuses passwords longer than 72 bytes, and so do we.
    #[error("bcrypt: password length exceeds 72 bytes")]
    TooLong,
    #[error("bcrypt: {0}")]
    Other(String),
}

/// `cost`, or the default where etcd would not accept it.
pub fn effective_cost(cost: u32) -> u32 {
    if (MIN_COST..=MAX_COST).contains(&cost) {
        cost
    } else {
        DEFAULT_COST
    }
}

/// The bcrypt hash of `password` (`$2a$<cost>$…`, as Go writes it).
pub fn hash(password: &str, cost: u32) -> Result<Vec<u8>, HashError> {
    // Go keeps all of 72 bytes (bcrypt's terminating zero falls off);
    // the crate's non-truncating form would refuse the 72nd.
    if password.len() > 72 {
        return Err(HashError::TooLong);
    }
    let parts = bcrypt::hash_with_result(password, effective_cost(cost))
        .map_err(|e| HashError::Other(e.to_string()))?;
    Ok(parts.format_for_version(bcrypt::Version::TwoA).into_bytes())
}

/// `hash` as a log entry carries it (base64).
pub fn hash_for_proposal(password: &str, cost: u32) -> Result<String, HashError> {
    Ok(base64::engine::general_purpose::STANDARD.encode(hash(password, cost)?))
}

/// A log entry's `hashedPassword`, decoded (None when it is not base64).
pub fn decode_hashed(hashed: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(hashed)
        .ok()
}

/// Whether `password` matches a stored bcrypt hash (a malformed hash
/// matches nothing).
pub fn verify(password: &str, stored: &[u8]) -> bool {
    let Ok(stored) = std::str::from_utf8(stored) else {
        return false;
    };
    bcrypt::verify(password, stored).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_travel_as_base64() {
        let h = hash("secret", MIN_COST).expect("hash");
        assert!(h.starts_with(b"$2a$04$"));
        assert!(verify("secret", &h));
        assert!(!verify("Secret", &h));
        let carried = hash_for_proposal("pw", MIN_COST).expect("hash");
        let decoded = decode_hashed(&carried).expect("base64");
        assert!(verify("pw", &decoded));
        assert!(!verify("pw", b"not a hash"));
        assert!(decode_hashed("%%%").is_none());
    }

    #[test]
    fn long_passwords_and_odd_costs_as_go() {
        assert!(matches!(
            hash(&"x".repeat(73), MIN_COST),
            Err(HashError::TooLong)
        ));
        assert!(hash(&"x".repeat(72), MIN_COST).is_ok());
        assert_eq!(effective_cost(3), DEFAULT_COST);
        assert_eq!(effective_cost(32), DEFAULT_COST);
        assert_eq!(effective_cost(12), 12);
    }

    #[test]
    fn hashes_of_the_reference_vectors_verify() {
        // A test vector of OpenBSD's bcrypt, in the `$2a$` form Go writes.
        let known = b"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
        assert!(verify("U*U", known));
        assert!(!verify("U*V", known));
    }
}
