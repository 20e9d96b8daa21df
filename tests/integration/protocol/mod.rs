//! The wire protocol (`gsdnet_edge::protocol`, docs/PROTOCOL.md): round trips, the documented
//! byte layouts and the streaming decoder's errors (`frames`), the size bounds of features and
//! results (`bounds`), and property tests of the framing (`props`).

mod bounds;
mod frames;
mod notices;
mod props;
mod transcript;
