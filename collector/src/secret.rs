//! Secrets (the ingest key, the admin token, the Redis URL) that never show in logs or debug output.

use subtle::ConstantTimeEq;

/// A secret string. Its `Debug` hides the value, so a logged config cannot leak it. Cheap to
/// clone (the application state, which holds two, is cloned for every request).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(std::sync::Arc<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into().into())
    }

    /// The value, for the few places that must use it (connecting to Redis).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with a presented credential in time independent of where they differ, so an
    /// attacker cannot find the key byte by byte from response times. (The length can still
    /// show; keys are generated with a fixed length.)
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;

    /// Refuses an empty value: an empty key would be a key anyone knows.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.trim().is_empty() {
            Err("must not be empty".into())
        } else {
            Ok(Self::new(value))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value_and_matching_is_exact() {
        let secret: Secret = "hunter2-key".parse().unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(secret.matches(b"hunter2-key"));
        assert!(!secret.matches(b"hunter2-kez"));
        assert!(!secret.matches(b"hunter2"));
        assert!(!secret.matches(b""));
        assert!("  ".parse::<Secret>().is_err());
    }
}
