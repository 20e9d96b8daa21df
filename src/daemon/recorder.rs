//! Recording instead of inferring (`gsdnet record`): a `WindowRunner` that appends every
//! assembled utterance to a recording file (the core's format, `recording.rs`), which
//! `client::replay` can send again.

use std::collections::HashMap;
use std::io::Write;

use crate::daemon::assembly::WindowJob;
use crate::daemon::inference::{RunError, WindowRunner};
use crate::protocol::UtteranceResult;
use crate::recording::{Record, RecordingWriter, UtteranceRecord};

/// A `WindowRunner` that records instead of inferring: every utterance of a window not yet
/// written (by position) is appended to the recording. Returns no results.
///
/// A conversation id that comes back in a new session (after `Reset`, expiry, eviction or a
/// recognised sender restart) is recorded as a new conversation `ID#2`, `ID#3`, ... so two
/// sessions are never merged by readers, which group utterances by conversation id.
pub struct RecorderRunner<W: Write + Send> {
    writer: RecordingWriter<W>,
    /// Recorded id and next position to write, per session.
    sessions: HashMap<u64, (String, u64)>,
    /// Sessions seen so far per conversation id.
    seen: HashMap<String, u32>,
}

impl<W: Write + Send> RecorderRunner<W> {
    pub fn new(writer: RecordingWriter<W>) -> Self {
        RecorderRunner {
            writer,
            sessions: HashMap::new(),
            seen: HashMap::new(),
        }
    }

    /// The recorded id of `job`'s session, writing its `Conversation` record when new.
    fn session(&mut self, job: &WindowJob) -> Result<(String, u64), RunError> {
        if let Some(s) = self.sessions.get(&job.session) {
            return Ok(s.clone());
        }
        let conv = job.conversation.as_str();
        let k = self.seen.entry(conv.to_string()).or_insert(0);
        *k += 1;
        let id = if *k == 1 {
            conv.to_string()
        } else {
            format!("{conv}#{k}")
        };
        self.writer.append(&Record::Conversation {
            id: id.clone(),
            started_ms: None,
        })?;
        self.sessions.insert(job.session, (id.clone(), 0));
        Ok((id, 0))
    }
}

impl<W: Write + Send> WindowRunner for RecorderRunner<W> {
    fn describe(&self) -> String {
        "recorder".into()
    }

    fn completion(&self) -> String {
        "none".into()
    }

    fn run(&mut self, job: &WindowJob) -> Result<Vec<UtteranceResult>, RunError> {
        let (conv, next) = self.session(job)?;
        for (i, u) in job.utterances.iter().enumerate() {
            let position = job.first_position + i as u64;
            if position < next {
                continue;
            }
            self.writer.append(&Record::Utterance(UtteranceRecord {
                conversation: conv.clone(),
                id: format!("{conv}_{}", u.utterance),
                speaker: u32::from(u.speaker),
                position: u.utterance,
                timestamp_ms: None,
                label: None,
                label_cont: None,
                features: u.features.clone(),
            }))?;
        }
        self.writer.flush()?;
        let next = next.max(job.first_position + job.utterances.len() as u64);
        self.sessions.insert(job.session, (conv, next));
        Ok(Vec::new())
    }
}
