//! The daemon (`gsdnet_edge::daemon`): the serve loop with mock runners (`serve`, `hardening`,
//! `models`, sender notices and limits in `notices`), start-up before READY (`startup`), the
//! inference thread's batching (`batch`), replay planning and the recorder (`replay`),
//! `gsdnet replay` paced into the default profile, reporting what was refused
//! (`replay_paced`), end-to-end replays through the real models (`e2e`, `e2e_iemocap`), the
//! Python reference client against the serve loop (`python_client`) and property tests of the
//! utterance assembler (`assembly_props`; its unit tests are in src/daemon/assembly/tests.rs).

mod assembly_props;
mod batch;
mod e2e;
mod e2e_iemocap;
mod hardening;
mod models;
mod notices;
mod python_client;
mod replay;
mod replay_paced;
mod serve;
mod startup;
mod transcript;
