//! Who may call what: one extractor, generic over the role (the ingest key or the admin token), that the Socket.IO handshake checks through too.

use super::error::ApiError;
use crate::secret::Secret;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use std::marker::PhantomData;

/// A credential the collector accepts, and where it may stand in a request.
pub trait Role: Send + Sync + 'static {
    /// What a refusal names: "ingest key" or "admin token".
    const NAME: &'static str;
    /// Whether a `token` query parameter may carry it (browsers cannot set headers on a
    /// WebSocket).
    const IN_QUERY: bool = false;
    /// The secret of this role in `state`.
    fn secret(state: &AppState) -> &Secret;
}

/// The ingest key: it ships in every extension, so it is public and allows only ingest.
pub struct Ingest;

/// The admin token, in the `Authorization` header.
pub struct Admin;

/// The admin token, in the `Authorization` header or as the `token` query parameter.
pub struct AdminOrQuery;

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

impl Role for AdminOrQuery {
    const NAME: &'static str = "admin token";
    const IN_QUERY: bool = true;
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
/// Proof that the request carries the admin token, as a bearer header or as `token` in the query.
pub type StreamToken = Auth<AdminOrQuery>;

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

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

impl<R: Role> FromRequestParts<AppState> for Auth<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let granted = match bearer(parts) {
            Some(credential) => holds::<R>(state, credential),
            None if R::IN_QUERY => axum::extract::Query::<TokenQuery>::try_from_uri(&parts.uri)
                .ok()
                .and_then(|q| q.0.token)
                .is_some_and(|token| holds::<R>(state, token.as_bytes())),
            None => false,
        };
        if granted {
            Ok(Self(PhantomData))
        } else {
            Err(ApiError::Unauthorized(R::NAME))
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
