//! Serial inputs (tokio-serial): opening a port raw at the profile's baud, and the input a
//! daemon serves (`daemon::serial` serves it like a socket connection and reopens it when it
//! fails).

use tokio_serial::{SerialPortBuilderExt, SerialStream};

use crate::config::SerialPort;

/// A serial input: an already opened stream (tests: one end of a pty pair) and/or a port to
/// (re)open from the board profile.
pub struct SerialInput {
    pub name: String,
    pub stream: Option<SerialStream>,
    pub reopen: Option<SerialPort>,
}

impl SerialInput {
    /// Opens `port` now; on failure the port is retried by `daemon::serial::serve_serial`.
    pub fn from_settings(port: &SerialPort) -> Self {
        let stream = match open(port) {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!("{}: cannot open yet ({e}); will retry", port.path.display());
                None
            }
        };
        SerialInput {
            name: format!("serial:{}", port.path.display()),
            stream,
            reopen: Some(port.clone()),
        }
    }
}

/// Opens a port raw, 8N1, no flow control, at the profile's baud.
pub fn open(port: &SerialPort) -> tokio_serial::Result<SerialStream> {
    tokio_serial::new(port.path.to_string_lossy(), port.baud)
        .data_bits(tokio_serial::DataBits::Eight)
        .parity(tokio_serial::Parity::None)
        .stop_bits(tokio_serial::StopBits::One)
        .flow_control(tokio_serial::FlowControl::None)
        .open_native_async()
}
