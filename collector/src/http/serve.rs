//! The server's accept loop: hyper's HTTP/1 connections with a header read timeout (which `axum::serve` has no setting for), `TCP_NODELAY`, the peer address for the flood limits, and graceful shutdown.
//!
//! `axum::serve` builds its hyper connections without a timer, so a client that sends half a
//! request line (or nothing) and then stalls keeps its connection, and a file descriptor, for
//! good: the request timeout of [`App`] starts only once the headers are in. Here every
//! connection has `ServerLimits::header_read_timeout` to send a request's headers, from when it
//! opens or its previous answer went out. HTTP/1.1 only (browsers speak HTTP/2 only over TLS,
//! which a proxy in front terminates); upgrades (the admin stream's and Socket.IO's WebSockets)
//! work as before.

use super::App;
use axum::body::Body;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// Serves `app` on `listener` until `shutdown` completes; then accepts nothing more, lets each
/// open connection finish the request it is serving, and returns once all are closed.
pub(crate) async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.limits().header_read_timeout);
    let (stop, stopping) = watch::channel(false);
    // Every connection's task holds a sender: when all are gone, every connection is closed.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // An answer goes out at once, not after the client's delayed acknowledgement of the
        // previous one.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let app = app.for_peer(peer);
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut app = app.clone();
            tower_service::Service::call(&mut app, request.map(Body::new))
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
        let (mut stopping, open) = (stopping.clone(), open.clone());
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let mut asked = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::trace!(%error, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stopping.changed(), if !asked => {
                        asked = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(open);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(open);
    let _ = all_closed.recv().await;
    Ok(())
}

/// After a failed accept: on at once when it was the connection's failure (it went away before
/// it was accepted); otherwise (out of file descriptors) after a pause, so that open
/// connections can close first.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accept failed; trying again in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
