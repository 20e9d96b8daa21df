//! Input endpoints of the daemon: socket binding (configured or systemd-activated) and serial
//! ports. Framing itself lives in `protocol::frame`, connection handling in `daemon`.

pub mod listeners;
pub mod serial;
