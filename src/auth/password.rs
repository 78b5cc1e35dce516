//! Passwords: argon2id (the crate's defaults: OWASP's m=19 MiB, t=2, p=1),
//! stored as PHC strings. Hashing costs tens of milliseconds of CPU: callers
//! on async threads run it through `spawn_blocking`, behind the hash gate
//! (`auth::limit::HashGate`).
//!
//! The 19 MiB of work memory a hash needs comes from a pool of buffers that
//! are reused ([`keep_memory_for`] of them are kept), not from a fresh
//! allocation per hash: the allocator would otherwise keep a freed 19 MiB
//! block per thread arena, and resident memory would grow with the number
//! of threads that ever hashed, not with the hashes running at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// Shortest password accepted.
pub const MIN_LEN: usize = 12;
/// Longest password accepted (argon2 hashes any length; this bounds the work
/// an unauthenticated caller can ask for).
pub const MAX_LEN: usize = 1024;
/// The most work memory a stored hash may ask for (256 MiB): a hash with a
/// larger `m` never matches rather than allocate it.
const MAX_BLOCKS: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("a password needs at least {MIN_LEN} characters")]
    TooShort,
    #[error("a password has at most {MAX_LEN} bytes")]
    TooLong,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Work-memory buffers not in use.
static MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());
/// How many buffers [`MEMORY`] keeps.
static KEEP: AtomicUsize = AtomicUsize::new(2);

/// Keep `n` work-memory buffers for reuse (the hashes that may run at
/// once); more are freed when they are done.
pub fn keep_memory_for(n: usize) {
    KEEP.store(n, Ordering::Relaxed);
}

/// Runs `f` with `blocks` blocks of work memory from the pool.
fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    let taken = MEMORY.lock().unwrap_or_else(PoisonError::into_inner).pop();
    let mut memory = taken.unwrap_or_default();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let out = f(&mut memory[..blocks]);
    let mut pool = MEMORY.lock().unwrap_or_else(PoisonError::into_inner);
    if pool.len() < KEEP.load(Ordering::Relaxed) {
        pool.push(memory);
    }
    out
}

/// Whether a new password meets the policy (no hashing).
pub fn check_policy(password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_LEN {
        return Err(PasswordError::TooLong);
    }
    if password.chars().count() < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    Ok(())
}

/// Checks the policy, then hashes (argon2id, v19, the default parameters,
/// a random 16-byte salt).
pub fn hash(password: &str) -> Result<String, PasswordError> {
    check_policy(password)?;
    hash_unchecked(password)
}

fn hash_unchecked(password: &str) -> Result<String, PasswordError> {
    let failed = |e: &dyn std::fmt::Display| PasswordError::Hash(e.to_string());
    let params = Params::default();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = Salt::generate();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    with_memory(params.block_count(), |memory| {
        argon2.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, memory)
    })
    .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored`. A malformed stored
/// hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    if password.len() > MAX_LEN {
        return false;
    }
    let Ok(phc) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(version), Ok(params)) = (
        Algorithm::try_from(phc.algorithm.as_str()),
        phc.version
            .map_or(Ok(Version::default()), Version::try_from),
        Params::try_from(&phc),
    ) else {
        return false;
    };
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        return false;
    }
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params);
    with_memory(blocks, |memory| {
        argon2.hash_password_into_with_memory(password.as_bytes(), salt, out, memory)
    })
    .is_ok()
        && crate::api::constant_time_eq(out, expected.as_bytes())
}

/// Spends the time of one verification, for callers that have no stored
/// hash (an unknown user): the answer then takes as long as for a known one.
pub fn verify_dummy(password: &str) {
    static DUMMY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        hash_unchecked("no user has this password").unwrap_or_default()
    });
    let _ = verify(password, &DUMMY);
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHasher, PasswordVerifier};

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterY", &a));
        assert!(!verify("correct horse battery", "not a hash"));
        assert!(!verify(
            "correct horse battery",
            "$argon2id$v=19$m=19456,t=2,p=1$"
        ));
    }

    #[test]
    fn hashes_are_the_argon2_crate_s_both_ways() {
        // Stored before the memory pool, by the crate itself.
        let stored = Argon2::default()
            .hash_password(b"an older stored password")
            .unwrap()
            .to_string();
        assert!(verify("an older stored password", &stored));
        assert!(!verify("an older stored passwort", &stored));
        let ours = hash("a new stored password").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"a new stored password", &parsed)
                .is_ok()
        );
        // Other parameters in the stored string are honoured.
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x10,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"legacy parameters here")
        .unwrap()
        .to_string();
        assert!(verify("legacy parameters here", &argon2i));
    }

    #[test]
    fn the_work_memory_is_reused() {
        keep_memory_for(2);
        let stored = hash("reuse the memory please").unwrap();
        assert!(verify("reuse the memory please", &stored));
        // The next hash gets the buffer the last one gave back. Other tests
        // of this process (plain `cargo test`) may hash meanwhile and take
        // it in between: one of a few tries must see it come back.
        let blocks = Params::default().block_count();
        let address = |m: &mut [Block]| m.as_ptr() as usize;
        let reused = (0..20).any(|_| {
            let first = with_memory(blocks, address);
            first == with_memory(blocks, address)
        });
        assert!(reused, "every hash allocated its own work memory");
    }

    #[test]
    fn the_policy_is_checked_before_hashing() {
        assert!(matches!(hash("short"), Err(PasswordError::TooShort)));
        assert!(matches!(
            hash(&"x".repeat(MAX_LEN + 1)),
            Err(PasswordError::TooLong)
        ));
    }
}
