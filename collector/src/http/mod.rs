//! The HTTP layer: one router per resource (ingest, admin reads, export, stream, Socket.IO, pages), one place for auth, the security headers, and the `App` service with the direct ingest path.

mod admin;
pub mod auth;
mod error;
mod export;
mod ingest;
mod pages;
mod params;
pub mod socketio;
mod stream;

pub use error::ApiError;
pub use ingest::INGEST_BODY_LIMIT_BYTES;

use crate::state::AppState;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method};
use axum::response::Response;
use axum::Router;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// All routes over `state`, Socket.IO included.
pub fn router(state: AppState) -> Router {
    // Admin answers hold participants' data: no cache (the browser's, a proxy's) keeps them.
    let admin = Router::new()
        .merge(admin::router())
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
#[derive(Clone)]
pub struct App {
    state: AppState,
    router: Router,
}

/// The future of one [`App`] answer.
pub type AppFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl App {
    pub(crate) fn new(state: AppState, router: Router) -> Self {
        Self { state, router }
    }
}

impl tower_service::Service<Request> for App {
    type Response = Response;
    type Error = Infallible;
    type Future = AppFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> AppFuture {
        if request.method() == Method::POST && request.uri().path() == "/api/v1/ingest" {
            Box::pin(ingest::direct_ingest(self.state.clone(), self.router.clone(), request))
        } else {
            let mut router = self.router.clone();
            Box::pin(async move { tower_service::Service::call(&mut router, request).await })
        }
    }
}

/// `axum::serve` asks for a service per connection: the same application.
impl<'a, L: axum::serve::Listener> tower_service::Service<axum::serve::IncomingStream<'a, L>> for App {
    type Response = App;
    type Error = Infallible;
    type Future = std::future::Ready<Result<App, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _stream: axum::serve::IncomingStream<'a, L>) -> Self::Future {
        std::future::ready(Ok(self.clone()))
    }
}
