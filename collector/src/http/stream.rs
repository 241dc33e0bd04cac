//! `GET /api/v1/stream`: a WebSocket that receives every message of the admin stream's fan-out as text; `POST /api/v1/stream-ticket`: the single-use ticket a browser opens it with.

use super::auth::{AdminToken, StreamAccess};
use crate::state::AppState;
use crate::stream::StreamEvent;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The stream routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/stream", get(handler))
        .route("/api/v1/stream-ticket", post(ticket))
}

/// `POST /api/v1/stream-ticket` (admin token): `{"ticket", "expires_in_ms"}`, a random ticket that
/// opens the stream once as `?ticket=` within 30 s.
async fn ticket(State(state): State<AppState>, _token: AdminToken) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "ticket": state.tickets.issue(),
        "expires_in_ms": crate::tickets::TICKET_TTL.as_millis() as u64,
    }))
}

/// `GET /api/v1/stream`: upgrades to a WebSocket that receives every stream message as text.
async fn handler(State(state): State<AppState>, _access: StreamAccess, upgrade: WebSocketUpgrade) -> Response {
    // Subscribed before the upgrade, so nothing published after the answer is missed.
    let messages = state.hub().subscribe();
    upgrade.on_upgrade(move |socket| forward(socket, messages))
}

async fn forward(mut socket: WebSocket, mut messages: broadcast::Receiver<Arc<StreamEvent>>) {
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Ok(event) => {
                    if socket.send(Message::Text(event.text().as_str().into())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, "stream: an admin socket fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                // Pings are answered by the library; anything else from the admin is ignored.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
