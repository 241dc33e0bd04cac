//! Participant tokens: HMAC-SHA256 of a server secret, the meeting id and the participant id, that bind an id to the client that created it.
//!
//! The ingest key is public (it ships in every extension build), so it proves nothing about who
//! writes a participant. The collector answers every accepted batch with the participant's
//! token, and every later batch of that (meeting, participant) must carry it (the pipeline
//! checks it on the record it loaded: `crate::pipeline`). A token is a function of the secret and
//! the two ids only, so it needs no storage, survives restarts, and every collector with the same
//! secret (the same admin token, by default) accepts the tokens of the others.
//!
//! Format: 64 lowercase hex digits of HMAC-SHA256(key, len(meeting) ‖ meeting ‖ len(participant)
//! ‖ participant), each length a big-endian u64, so no two id pairs give the same input, by
//! RustCrypto's `hmac` and `sha2` (the keyed state is made once and cloned per token, so a token
//! costs hashing the ids only), checked against RFC 4231's vectors. Tokens are compared with
//! `subtle`, in constant time, as the keys are (`crate::secret`).

use crate::secret::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The label of the key derived from the admin token when no participant secret is set.
const DERIVED_KEY_LABEL: &[u8] = b"call-vitals participant token key v1";

/// Characters of a token (32 bytes in hex).
pub const TOKEN_LEN: usize = 64;

/// Why a batch for an existing participant was refused (403): the text says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("missing participant token: this participant already exists, so its batches must carry the participant_token of its first acknowledgement")]
    Missing,
    #[error("wrong participant token: it was not issued for this meeting and participant")]
    Wrong,
}

/// Issues and checks participant tokens with one key.
pub struct ParticipantTokens {
    /// HMAC-SHA256 keyed, nothing hashed yet.
    keyed: HmacSha256,
}

impl ParticipantTokens {
    /// Tokens keyed by `secret` (`--participant-secret`).
    pub fn new(secret: &Secret) -> Self {
        Self::with_key(secret.expose().as_bytes())
    }

    /// Tokens keyed by HMAC(admin token, a fixed label): the default, so that collectors sharing
    /// a Redis and an admin token accept each other's tokens with no setting of their own, and
    /// the admin token itself is never the key.
    pub fn derived_from(admin_token: &Secret) -> Self {
        let key = Self::with_key(admin_token.expose().as_bytes()).hmac(&[DERIVED_KEY_LABEL]);
        Self::with_key(&key)
    }

    /// Tokens keyed by `secret` when given, else derived from `admin_token`.
    pub fn configured(secret: Option<&Secret>, admin_token: &Secret) -> Self {
        secret.map_or_else(|| Self::derived_from(admin_token), Self::new)
    }

    fn with_key(key: &[u8]) -> Self {
        Self {
            keyed: HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length"),
        }
    }

    /// HMAC-SHA256 of the concatenated `parts` under this key.
    fn hmac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// The token of (`meeting_id`, `participant_id`).
    pub fn issue(&self, meeting_id: &str, participant_id: &str) -> String {
        let (meeting, participant) = (meeting_id.as_bytes(), participant_id.as_bytes());
        let mac = self.hmac(&[
            &(meeting.len() as u64).to_be_bytes(),
            meeting,
            &(participant.len() as u64).to_be_bytes(),
            participant,
        ]);
        hex(&mac)
    }

    /// Whether `presented` is `expected` (an [`Self::issue`] answer), compared in constant time.
    pub fn check(expected: &str, presented: Option<&str>) -> Result<(), TokenRefusal> {
        let presented = presented.ok_or(TokenRefusal::Missing)?;
        if bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) {
            Ok(())
        } else {
            Err(TokenRefusal::Wrong)
        }
    }
}

impl std::fmt::Debug for ParticipantTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParticipantTokens(<key hidden>)")
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(DIGITS[usize::from(b >> 4)] as char);
        text.push(DIGITS[usize::from(b & 15)] as char);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_is_hmac_sha256() {
        // RFC 4231, test cases 2 (a short key) and 6 (a key longer than the block).
        let short = ParticipantTokens::with_key(b"Jefe");
        assert_eq!(
            hex(&short.hmac(&[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let long = ParticipantTokens::with_key(&[0xaa; 131]);
        assert_eq!(
            hex(&long.hmac(&[b"Test Using Larger Than Block-Size Key - Hash Key First"])),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        // Issuing twice from one key gives the same (the padded states are copied, not used up).
        assert_eq!(short.issue("m", "p"), short.issue("m", "p"));
    }

    #[test]
    fn tokens_bind_both_ids_unambiguously_and_depend_on_the_key() {
        let tokens = ParticipantTokens::new(&Secret::new("participant-secret-0123"));
        let token = tokens.issue("m", "p");
        assert_eq!(token.len(), TOKEN_LEN);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(tokens.issue("m", "p"), token, "a function of the ids");
        // Moving a byte from one id to the other changes the token (the lengths are in it).
        assert_ne!(tokens.issue("mp", ""), tokens.issue("m", "p"));
        assert_ne!(tokens.issue("m", "q"), token);
        assert_ne!(tokens.issue("n", "p"), token);
        let other = ParticipantTokens::new(&Secret::new("participant-secret-4567"));
        assert_ne!(other.issue("m", "p"), token);
        // The derived key is neither the admin token nor the configured secret.
        let admin = Secret::new("admin-token-0123456789");
        let derived = ParticipantTokens::derived_from(&admin).issue("m", "p");
        assert_eq!(ParticipantTokens::configured(None, &admin).issue("m", "p"), derived);
        assert_ne!(ParticipantTokens::new(&admin).issue("m", "p"), derived);
        assert!(!format!("{tokens:?}").contains("secret"));
    }

    #[test]
    fn check_says_missing_or_wrong() {
        let token = ParticipantTokens::derived_from(&Secret::new("t")).issue("m", "p");
        assert_eq!(ParticipantTokens::check(&token, Some(&token)), Ok(()));
        assert_eq!(ParticipantTokens::check(&token, None), Err(TokenRefusal::Missing));
        assert_eq!(
            ParticipantTokens::check(&token, Some(&token[1..])),
            Err(TokenRefusal::Wrong)
        );
        assert_eq!(ParticipantTokens::check(&token, Some("")), Err(TokenRefusal::Wrong));
        assert!(TokenRefusal::Missing
            .to_string()
            .starts_with("missing participant token"));
        assert!(TokenRefusal::Wrong.to_string().starts_with("wrong participant token"));
    }
}
