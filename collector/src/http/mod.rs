//! The HTTP layer: one router per resource (ingest, admin reads, export, stream, Socket.IO, pages), one place for auth, the security headers, the `App` service with the direct ingest path, and the server's accept loop.

mod admin;
pub mod auth;
mod error;
mod export;
mod ingest;
mod metrics;
mod pages;
mod params;
pub(crate) mod serve;
pub mod socketio;
mod stream;

pub use error::ApiError;
pub use export::EXPORT_MAX_ROWS;
pub use ingest::INGEST_BODY_LIMIT_BYTES;

/// The client address of a request (see [`crate::admission::client_address`]).
pub(crate) fn client_of(state: &AppState, parts: &axum::http::request::Parts) -> std::net::IpAddr {
    client_from(state, &parts.extensions, &parts.headers)
}

/// [`client_of`] from a request's extensions and headers.
pub(crate) fn client_from(
    state: &AppState,
    extensions: &axum::http::Extensions,
    headers: &axum::http::HeaderMap,
) -> std::net::IpAddr {
    let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let forwarded_for = headers.get("x-forwarded-for").and_then(|value| value.to_str().ok());
    crate::admission::client_address(peer, forwarded_for, state.settings.admission.trust_proxy)
}

use crate::state::AppState;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Semaphore;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// All routes over `state`, Socket.IO included.
pub fn router(state: AppState) -> Router {
    // Admin answers hold participants' data: no cache (the browser's, a proxy's) keeps them.
    let admin = Router::new()
        .merge(admin::router())
        .merge(metrics::router())
        .merge(export::router())
        .merge(stream::router())
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    let routes: Router = Router::new()
        .merge(pages::router(state.settings.demo_page))
        .merge(admin)
        .merge(ingest::router(state.clone()))
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(|mut response: Response| async move {
            security_headers(response.headers_mut());
            response
        }))
        // The request's span names its method and path, never its query (which may carry a
        // ticket, or a token of an older dashboard) or its headers.
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            tracing::debug_span!("request", method = %request.method(), path = request.uri().path())
        }))
        .with_state(state.clone());
    routes.merge(socketio::router(state))
}

/// What every page may load: its own scripts, styles and images, and connections to its own
/// origin (the API and the WebSocket); nothing inline, no plugins, and no framing by any site.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The headers every answer of the router carries (unless the handler set its own): the CSP, no
/// framing, no referrer, no content sniffing.
pub(crate) fn security_headers(headers: &mut axum::http::HeaderMap) {
    static HEADERS: [(header::HeaderName, HeaderValue); 4] = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    for (name, value) in &HEADERS {
        if !headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The whole HTTP application: [`router`] behind a direct path for the usual ingest request.
///
/// A `POST /api/v1/ingest` with the ingest key, a JSON content type and a known length within the
/// limit is read, parsed, ingested and answered here, with the headers the router's layers
/// add (CORS, `nosniff`), counted in the ingest metrics like the router's. So the request that
/// makes up nearly all of the load skips the router's per-request work (its routing, layers,
/// boxed services and extractors). Any other request, and an ingest body that does not parse,
/// goes to the router, whose answers (and error messages) are the reference.
///
/// Every request runs under the server's limits: at most `max_concurrent_requests` at once (503
/// beyond, with `Retry-After`) and `request_timeout` to be read and answered (408, and the
/// connection closed, so a slow-loris body is cut off); the long-polling `GET /socket.io/` is
/// held by Socket.IO's own timers instead. The connection's peer address goes into the request's
/// extensions as `ConnectInfo`, for the flood limits. The headers themselves must arrive within
/// `header_read_timeout` (the accept loop of `serve.rs`).
#[derive(Clone)]
pub struct App {
    state: AppState,
    router: Router,
    peer: Option<SocketAddr>,
    permits: Arc<Semaphore>,
}

/// The future of one [`App`] answer.
pub type AppFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl App {
    pub(crate) fn new(state: AppState, router: Router) -> Self {
        let permits = Arc::new(Semaphore::new(state.settings.server.max_concurrent_requests));
        Self {
            state,
            router,
            peer: None,
            permits,
        }
    }

    /// The application for one connection from `peer`.
    pub(crate) fn for_peer(&self, peer: SocketAddr) -> Self {
        let mut app = self.clone();
        app.peer = Some(peer);
        app
    }

    pub(crate) fn limits(&self) -> ServerLimits {
        self.state.settings.server
    }
}

/// The server's own limits, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerLimits {
    /// Requests served at once (across connections); beyond, 503.
    pub max_concurrent_requests: usize,
    /// Time to read a request (headers and body) and answer it.
    pub request_timeout: Duration,
    /// Time a connection has to send a request's headers (from its first byte, or from the end
    /// of the previous answer on a kept-alive connection); beyond, it is closed.
    pub header_read_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 1024,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// An answer of the server's limits: `status`, a JSON error and `Retry-After: 1`.
fn limit_response(status: StatusCode, message: &str) -> Response {
    let mut response = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    if status == StatusCode::REQUEST_TIMEOUT {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

impl tower_service::Service<Request> for App {
    type Response = Response;
    type Error = Infallible;
    type Future = AppFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request) -> AppFuture {
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return Box::pin(async {
                Ok(limit_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many requests at once",
                ))
            });
        };
        let long_poll = request.method() == Method::GET && request.uri().path().starts_with("/socket.io/");
        let timeout = self.state.settings.server.request_timeout;
        let answer: AppFuture = if request.method() == Method::POST && request.uri().path() == "/api/v1/ingest" {
            Box::pin(ingest::direct_ingest(self.state.clone(), self.router.clone(), request))
        } else {
            let mut router = self.router.clone();
            Box::pin(async move { tower_service::Service::call(&mut router, request).await })
        };
        Box::pin(async move {
            let response = if long_poll {
                answer.await
            } else {
                match tokio::time::timeout(timeout, answer).await {
                    Ok(response) => response,
                    Err(_) => Ok(limit_response(StatusCode::REQUEST_TIMEOUT, "request not read in time")),
                }
            };
            drop(permit);
            response
        })
    }
}
