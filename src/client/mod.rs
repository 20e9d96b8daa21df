//! Senders of the project that talk to the daemon: a recording as the timed messages of a set
//! of sensors (`replay`), and the paced sender with its account of every utterance (`paced`,
//! `ledger`; docs/PROTOCOL.md, "Notices and limits"), which `gsdnet replay` runs.

pub mod ledger;
pub mod paced;
pub mod replay;
