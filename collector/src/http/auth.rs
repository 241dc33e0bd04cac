//! Who may call what: one extractor, generic over the role (the ingest key or the admin token), that the Socket.IO handshake checks through too, and the admin stream's ticket.

use super::error::ApiError;
use crate::secret::Secret;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use std::marker::PhantomData;

/// A credential the collector accepts, always in the `Authorization` header (never in a URL,
/// which proxies and browser histories keep).
pub trait Role: Send + Sync + 'static {
    /// What a refusal names: "ingest key" or "admin token".
    const NAME: &'static str;
    /// The secret of this role in `state`.
    fn secret(state: &AppState) -> &Secret;
}

/// The ingest key: it ships in every extension, so it is public and allows only ingest.
pub struct Ingest;

/// The admin token, in the `Authorization` header.
pub struct Admin;

impl Role for Ingest {
    const NAME: &'static str = "ingest key";
    fn secret(state: &AppState) -> &Secret {
        &state.ingest_key
    }
}

impl Role for Admin {
    const NAME: &'static str = "admin token";
    fn secret(state: &AppState) -> &Secret {
        &state.admin_token
    }
}

/// Proof that the request carries the credential of role `R`.
pub struct Auth<R: Role>(PhantomData<R>);

/// Proof that the request carries the ingest key.
pub type IngestKey = Auth<Ingest>;
/// Proof that the request carries the admin token.
pub type AdminToken = Auth<Admin>;

/// Whether `credential` is the secret of role `R` (compared in constant time).
pub fn holds<R: Role>(state: &AppState, credential: &[u8]) -> bool {
    R::secret(state).matches(credential)
}

/// The credential of `Authorization: Bearer <credential>` (scheme case-insensitive).
pub fn bearer(parts: &Parts) -> Option<&[u8]> {
    let value = parts.headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, credential) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(credential)
}

impl<R: Role> FromRequestParts<AppState> for Auth<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if bearer(parts).is_some_and(|credential| holds::<R>(state, credential)) {
            Ok(Self(PhantomData))
        } else {
            Err(ApiError::Unauthorized(R::NAME))
        }
    }
}

/// Proof that a request may open the admin stream: the admin token as a bearer header (for
/// programs), or a ticket of `POST /api/v1/stream-ticket` as the `ticket` query parameter (for
/// browsers, whose WebSocket cannot carry a header), used up by this request. The admin token in
/// the query (`?token=`) is refused.
pub struct StreamAccess;

#[derive(serde::Deserialize)]
struct TicketQuery {
    ticket: Option<String>,
}

impl FromRequestParts<AppState> for StreamAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let granted = match bearer(parts) {
            Some(credential) => holds::<Admin>(state, credential),
            None => axum::extract::Query::<TicketQuery>::try_from_uri(&parts.uri)
                .ok()
                .and_then(|q| q.0.ticket)
                .is_some_and(|ticket| state.tickets.redeem(&ticket)),
        };
        if granted {
            Ok(Self)
        } else {
            Err(ApiError::Unauthorized("admin token or stream ticket"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(authorization: Option<&str>) -> Parts {
        let mut request = Request::builder();
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn bearer_takes_the_credential_of_a_bearer_header_only() {
        assert_eq!(bearer(&parts(Some("Bearer abc"))), Some(&b"abc"[..]));
        assert_eq!(bearer(&parts(Some("bearer abc"))), Some(&b"abc"[..]));
        assert_eq!(bearer(&parts(Some("Basic abc"))), None);
        assert_eq!(bearer(&parts(Some("Bearer"))), None);
        assert_eq!(bearer(&parts(None)), None);
    }
}
