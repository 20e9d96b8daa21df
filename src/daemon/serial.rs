//! Serving a serial input: a port is one byte stream served like a socket connection; when it
//! fails (unplugged USB adapter) it is reopened every second until shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::connection::{serve_stream, StreamCtx};
use super::shared::{stopped, Input, Phases, Shared};
use crate::io::serial::{open, SerialInput};

const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// Serves a serial input until shutdown, reopening it when it fails. Serial ports are not
/// subject to the socket clients' connection limits and have their own input channel.
pub async fn serve_serial(mut input: SerialInput, shared: Arc<Shared>, tx: mpsc::Sender<Input>, phases: Phases) {
    let source: Arc<str> = input.name.clone().into();
    let mut stop = phases.input.clone();
    // Held only while no stream is served: the stream holds it, and drops it at shutdown.
    let mut tx = Some(tx);
    loop {
        if let Some(stream) = input.stream.take() {
            let Some(sender) = tx.take() else { return };
            let ctx = StreamCtx {
                source: Arc::clone(&source),
                input: sender,
                ticket: None,
                phases: phases.clone(),
            };
            tx = serve_stream(stream, Arc::clone(&shared), ctx).await;
            if tx.is_none() || *stop.borrow() {
                return;
            }
            log::warn!("{source}: stream ended");
        }
        if *stop.borrow() {
            return;
        }
        let Some(port) = &input.reopen else { return };
        tokio::select! {
            _ = tokio::time::sleep(REOPEN_EVERY) => {}
            _ = stopped(&mut stop) => return,
        }
        match open(port) {
            Ok(s) => {
                log::info!("{source}: reopened");
                input.stream = Some(s);
            }
            Err(e) => log::debug!("{source}: reopen failed: {e}"),
        }
    }
}
